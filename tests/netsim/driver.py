"""Runs inside a network namespace the test made (`unshare -rn`): refuses to go on if the
namespace is the host's, starts the simulated internet, waits until it is ready, runs the
client script, stops the server and prints one JSON document: the script's output and exit
status, the records the server wrote, the captured payload files."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time


def _die_with_us() -> None:
    """The server ends with the driver even when a test's timeout kills the driver."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main() -> None:
    host_ns, captures, timeout, script = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    extra = sys.argv[5:]
    mine = str(os.stat("/proc/self/ns/net").st_ino)
    if mine == host_ns:
        print(json.dumps({"error": "still in the host's network namespace"}))
        sys.exit(3)
    rec_r, rec_w = os.pipe()
    ready_r, ready_w = os.pipe()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bubble.netsim",
            "--records-fd",
            str(rec_w),
            "--ready-fd",
            str(ready_w),
            "--captures",
            captures,
            *extra,
        ],
        pass_fds=(rec_w, ready_w),
        preexec_fn=_die_with_us,
    )
    os.close(rec_w)
    os.close(ready_w)
    chunks: list[bytes] = []

    def pump() -> None:  # read records while they come, as the supervisor does
        while chunk := os.read(rec_r, 1 << 16):
            chunks.append(chunk)

    reader = threading.Thread(target=pump)
    reader.start()
    ready = os.read(ready_r, 4096).decode()
    started = time.monotonic()
    result = {"ready": ready.strip(), "netns": mine}
    if ready.startswith("ready"):
        try:
            done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, timeout=timeout)
            result.update(
                rc=done.returncode,
                stdout=done.stdout.decode(errors="replace"),
                stderr=done.stderr.decode(errors="replace"),
            )
        except subprocess.TimeoutExpired:
            result.update(rc=None, stdout="", stderr="client timed out")
    result["client_s"] = time.monotonic() - started
    server.send_signal(signal.SIGTERM)
    result["server_rc"] = server.wait()
    reader.join()
    result["stop_s"] = time.monotonic() - started - result["client_s"]
    result["records"] = [json.loads(line) for line in b"".join(chunks).decode().splitlines()]
    print(json.dumps(result))


main()
