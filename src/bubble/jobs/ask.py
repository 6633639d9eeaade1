"""Ask mode: the analyst answers a run's held calls from the page (DESIGN §2.8).

The launcher speaks the decision-hook protocol (sandbox/decider.py) on a socket it inherits as
SUPERVISOR_JSON_FD; the `AskBridge` holds the other end in whoever executes the run (the web
process's runner, or a worker on another machine). Decisions do not travel through a local
pipe from the web: the page posts them to the store (`POST /api/runs/<id>/decisions`), and the
bridge polls the store for the requests it holds, so the same path works across machines.
The launcher keeps the deadline: a call nobody answers in time is denied there.

"Always allow" remembers the request's path (or peer host) for the rest of the run: later
requests for the same place are allowed without asking (and still logged as asked/allowed).
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_ALLOW = {"action": "ALLOW"}
REPLIES: dict[str, dict[str, Any]] = {
    "allow": _ALLOW,
    "always": _ALLOW,
    "deny": {"action": "DENY_ERRNO", "errno": "EPERM"},
}
POLL_S = 0.1  # how often the store is asked for decisions while requests wait
MAX_LINE = 1 << 16


class AskBridge(threading.Thread):
    """Forwards held calls' decisions from the store to one launcher."""

    def __init__(
        self,
        sock: socket.socket,
        decisions: Callable[[list[int]], dict[int, str]],
        stop: threading.Event,
        name: str = "ask",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.sock = sock
        self.decisions = decisions  # seqs of policy.ask events -> action ("allow"...)
        self.stop = stop
        self.waiting: dict[int, tuple[int, str]] = {}  # ask seq -> (request id, place)
        self.always: set[str] = set()
        self.buf = b""

    def run(self) -> None:
        try:
            self._loop()
        except OSError as err:  # the launcher went away: nothing left to answer
            log.debug("ask bridge ends: %s", err)
        finally:
            self.sock.close()

    def _loop(self) -> None:
        fd = self.sock.fileno()
        while not self.stop.is_set():
            ready, _, _ = select.select([fd], [], [], POLL_S)
            if ready:
                chunk = self.sock.recv(MAX_LINE)
                if not chunk:
                    return
                self.buf += chunk
                while b"\n" in self.buf:
                    line, self.buf = self.buf.split(b"\n", 1)
                    self._request(line)
                if len(self.buf) > MAX_LINE:
                    self.buf = b""
            if self.waiting:
                self._answer(self.decisions(sorted(self.waiting)))

    def _request(self, line: bytes) -> None:
        try:
            req = json.loads(line)
            key, seq = int(req["id"]), int(req["seq"])
        except (ValueError, KeyError, TypeError):
            return  # the launcher writes these: a bad one is a bug, and it times out safely
        place = _place(req)
        if place in self.always:
            self._reply(key, _ALLOW)
        else:
            self.waiting[seq] = (key, place)

    def _answer(self, decided: dict[int, str]) -> None:
        for seq, action in decided.items():
            held = self.waiting.pop(seq, None)
            if held is None or action not in REPLIES:
                continue
            key, place = held
            if action == "always" and place:
                self.always.add(place)
                for other, (k, p) in list(self.waiting.items()):
                    if p == place:
                        del self.waiting[other]
                        self._reply(k, _ALLOW)
            self._reply(key, REPLIES[action])

    def _reply(self, key: int, reply: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps({"id": key, **reply}).encode() + b"\n")


def _place(req: dict[str, Any]) -> str:
    """What "always allow this" covers: the path, or the peer host."""
    if req.get("path"):
        return f"path:{req['path']}"
    if req.get("peer"):
        return f"host:{req['peer']}"
    return ""


def socket_for_launcher() -> tuple[socket.socket, int]:
    """(our end, the launcher's end as an inheritable fd for SUPERVISOR_JSON_FD)."""
    ours, theirs = socket.socketpair()
    fd = os.dup(theirs.fileno())  # inheritable copy: pass it with pass_fds
    theirs.close()
    return ours, fd
