"""pyfloor: the smallest correct USER_NOTIF supervisor in Python, the floor for a Python engine.

    python bench/pyfloor.py [-e EVENTS] -- PROG [ARG...]

The same protocol as floor.c (creat -> NOTIFY, answered EPERM; pidfd_getfd hand-off,
SYNC_WAKE_UP, POLLHUP ends it), written the plainest fast way Python allows: one
preallocated buffer, `fcntl.ioctl` in place, no objects per call. With -e, each call also gets
a path read (process_vm_readv), an ID_VALID check and one JSON line, flushed whenever the
listener has nothing pending. The gap between this and Bubble is Bubble's own per-call work;
the gap between this and floor.c is what the language costs.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import select
import struct
import sys
import time

NOTIF = struct.Struct("<QIIiIQ6Q")  # struct seccomp_notif: 80 bytes
RESP = struct.Struct("<QqiI")  # struct seccomp_notif_resp: 24 bytes
RECV, SEND, ID_VALID, SET_FLAGS = 0xC0502100, 0xC0182101, 0x40082102, 0x40082104
ACT_ALLOW, ACT_NOTIFY = 0x7FFF0000, 0x7FC00000
NR_CREAT, NR_PIDFD_GETFD, PR_SET_NO_NEW_PRIVS, EPERM = 85, 438, 38, 1

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.process_vm_readv.restype = ctypes.c_ssize_t


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def child(ready_w: int, go_r: int, argv: list[str]) -> None:
    scmp = ctypes.CDLL("libseccomp.so.2")  # by name: find_library would run ldconfig
    scmp.seccomp_init.restype = ctypes.c_void_p
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    ctx = ctypes.c_void_p(scmp.seccomp_init(ACT_ALLOW))
    if scmp.seccomp_rule_add(ctx, ACT_NOTIFY, NR_CREAT, 0) or scmp.seccomp_load(ctx):
        os._exit(125)
    listener = scmp.seccomp_notify_fd(ctx)
    os.write(ready_w, b"%d\n" % listener)
    os.read(go_r, 1)
    os.close(listener)  # the target must not answer its own calls
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)


def serve(listener: int, events: int | None) -> None:
    buf, zero = bytearray(NOTIF.size), bytes(NOTIF.size)
    resp = bytearray(RESP.size)
    path = ctypes.create_string_buffer(4096)
    local, remote = Iovec(ctypes.addressof(path), 0), Iovec(0, 0)
    local_p, remote_p = ctypes.byref(local), ctypes.byref(remote)
    read_mem = libc.process_vm_readv
    second, prefix = -1, ""
    lines: list[str] = []
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    seq = 0
    while True:
        ready = poller.poll(0)
        if not ready:  # nothing pending: the moment to write what we have, then wait
            if lines and events is not None:
                os.write(events, "".join(lines).encode())
                lines.clear()
            ready = poller.poll(None)
        mask = ready[0][1]
        if not mask & select.POLLIN:
            if mask & (select.POLLHUP | select.POLLERR):
                break
            continue
        buf[:] = zero
        try:
            fcntl.ioctl(listener, RECV, buf, True)
        except OSError:
            continue  # the caller went away
        nid, pid, _flags, nr, _arch, _ip, arg0, mode, *_ = NOTIF.unpack(buf)
        text = ""
        if events is not None:
            # One page at most: the floor's paths are short (floor.c reads page by page).
            local.len = remote.len = 4096 - arg0 % 4096
            remote.base = arg0
            n = read_mem(pid, local_p, 1, remote_p, 1, 0)
            text = path.raw[: max(n, 0)].split(b"\0", 1)[0].decode(errors="backslashreplace")
            try:
                fcntl.ioctl(listener, ID_VALID, struct.pack("<Q", nid))
            except OSError:
                continue
        RESP.pack_into(resp, 0, nid, 0, -EPERM, 0)
        try:
            fcntl.ioctl(listener, SEND, resp, True)
        except OSError:
            continue
        if events is not None:
            seq += 1
            now = time.time()
            if int(now) != second:  # format the second once, as floor.c and Bubble do
                second = int(now)
                prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            ts = f"{prefix}.{int((now - second) * 1000):03d}Z"
            lines.append(
                f'{{"seq":{seq},"ts":"{ts}","type":"policy.alert","pid":{pid},'
                f'"category":"fs","syscall":"creat","syscall_no":{nr},"reason":"errno",'
                f'"denied":"EPERM","path":{json.dumps(text)},"mode":{mode}}}\n'
            )
    if lines and events is not None:
        os.write(events, "".join(lines).encode())


def main(args: list[str]) -> int:
    events = None
    if args[:1] == ["-e"]:
        events = os.open(args[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        args = args[2:]
    argv = args[1:] if args[:1] == ["--"] else args
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        child(ready_w, go_r, argv)
    child_fd = int(os.read(ready_r, 32))
    pidfd = os.pidfd_open(pid)
    listener = libc.syscall(NR_PIDFD_GETFD, pidfd, child_fd, 0)
    if listener < 0:
        sys.exit(f"pyfloor: pidfd_getfd: {os.strerror(ctypes.get_errno())}")
    fcntl.ioctl(listener, SET_FLAGS, 1)  # SYNC_WAKE_UP (kernel >= 6.6)
    os.write(go_w, b"G")
    serve(listener, events)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
