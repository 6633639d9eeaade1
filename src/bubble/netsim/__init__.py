"""The simulated internet (`--net-sim`): a DNS server and a sinkhole that live inside the
target's private network namespace, so every name resolves and every connection is accepted
without a packet leaving the machine. It records what the target sends (`net.dns`,
`net.capture`); the supervisor turns those records into events on the run's private channel.

Modules: `parse` (bounded HTTP / TLS ClientHello parsers), `names` (which address a name
gets), `dns` (answers), `tls` (the per-run certificate), `sinkhole` (TCP and UDP capture),
`server` (the process: namespace rules, sockets, loop, shutdown), `channel` (records to the
supervisor). Imports flow from the leaves only; only `sandbox` starts it.
"""
