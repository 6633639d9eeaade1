"""The orchestrator: runs queued jobs through the launcher and keeps their record.

`Jobs` (in `service`) is the one entry point the web layer uses. This package imports only
the leaf modules (`bubble.policy`, `bubble.events`, `bubble.errors`); it starts the sandbox
as a subprocess (`python -m bubble run --events-fd N ...`) and never imports it.
"""
