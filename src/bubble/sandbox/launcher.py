"""`bubble run`'s front door: validate the program, the user and the event sink, with the
exit statuses DESIGN §3 defines, then hand over to a `Session`."""

from __future__ import annotations

import os
import pwd

from bubble.errors import NotExecutable, ProgramNotFound, UsageError
from bubble.policy import Policy


def resolve_program(name: str) -> str:
    """The path exec will use for `name`, with the errors DESIGN §3 asks for."""
    if "/" in name:
        path = name
    else:
        found = _which(name)
        if found is None:
            raise ProgramNotFound(f"{name}: command not found", "give a full path or fix PATH")
        path = found
    if not os.path.exists(path):
        raise ProgramNotFound(f"{path}: no such file", "check the path of the program")
    if os.path.isdir(path):
        raise NotExecutable(f"{path}: is a directory", "name a program file")
    if not os.access(path, os.X_OK):
        raise NotExecutable(
            f"{path}: not executable", f"chmod +x {path}, or run it through its interpreter"
        )
    return path


def _which(name: str) -> str | None:
    """`shutil.which(name)` for a bare name: `shutil` pulls bz2, lzma, zlib and fnmatch,
    4.4 ms of every cold start-up (the least of 15 `-X importtime` runs, loaded machine)."""
    search = os.environ.get("PATH")
    if search is None:
        search = os.confstr("CS_PATH") or os.defpath  # as shutil.which
    for folder in search.split(os.pathsep):
        path = os.path.join(folder, name)
        if os.path.exists(path) and os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


_LOCKS: list[int] = []  # lock fds of dynamic uids (close-on-exec: no child keeps them)


def target_user(policy: Policy) -> tuple[int | None, int | None, str | None]:
    """(uid, gid, name) to drop to, or Nones to keep our identity (DESIGN §2.5)."""
    if os.geteuid() != 0:
        if policy.user:
            raise UsageError("--user needs root", "run bubble as root, or drop --user")
        return None, None, None
    if policy.keep_root:
        return None, None, None
    if policy.fs_overlay is not None and not policy.user:
        # Root of its own user namespace, mapped to root: it may change any file *in the
        # layer*, and holds no capability over anything else (docs/security.md).
        return None, None, "root (user namespace, in the layer)"
    name = policy.user or "nobody"
    if name == "dynamic":
        from bubble.sandbox import dynuser

        try:
            uid, lock = dynuser.allocate()
        except OSError as err:
            raise UsageError(f"--user dynamic: {err}", "name an account with --user") from None
        _LOCKS.append(lock)  # held until bubble exits: no other run takes this uid meanwhile
        return uid, uid, f"dynamic:{uid}"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UsageError(f"--user {name}: no such user", "name an existing account") from None
    return entry.pw_uid, entry.pw_gid, name


def _open_events(events_path: str | None, events_fd: int | None) -> int:
    if events_fd is not None:
        try:
            os.fstat(events_fd)
        except OSError:
            raise UsageError(
                f"--events-fd {events_fd} is not open", "pass an open descriptor"
            ) from None
        return events_fd
    if events_path in (None, "-"):
        return 2
    try:
        return os.open(events_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise UsageError(
            f"--events {events_path}: {err.strerror}", "give a writable file"
        ) from None


def _captures_dir(path: str | None) -> str | None:
    """The folder for --net-sim payloads, created 0700 if missing (only we write there)."""
    if path is None:
        return None
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--captures {path}: {err.strerror}", "give a writable folder") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--captures {path}: not writable", "give a writable folder")
    return os.path.abspath(path)


MAX_HTTP_BODY = 64 * 1024


def _http_body(path: str | None) -> bytes | None:
    """The body the sinkhole answers HTTP requests with (--http-body FILE)."""
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            body = fh.read(MAX_HTTP_BODY + 1)
    except OSError as err:
        raise UsageError(f"--http-body {path}: {err.strerror}", "give a readable file") from None
    if len(body) > MAX_HTTP_BODY:
        raise UsageError(f"--http-body {path} is over 64 KiB", "give a smaller file")
    return body


def launch(
    policy: Policy,
    argv: list[str],
    events: str | None = None,
    events_fd: int | None = None,
    sink: tuple[bool | None, int | None] = (None, None),
    captures: str | None = None,
    http_body: str | None = None,
) -> int:
    """Run `argv` under `policy`; returns the exit status DESIGN §3 defines. `sink`: text
    lines instead of NDJSON (True: in colour), and a descriptor for a copy of the NDJSON."""
    from bubble.sandbox import netns
    from bubble.sandbox.session import Session

    for scope in policy.write:
        if not os.path.exists(scope):
            raise UsageError(f"write scope {scope} does not exist", f"create it: mkdir -p {scope}")

    netns.check_stdio(policy)
    return Session(
        policy,
        argv,
        _open_events(events, events_fd),
        resolve_program(argv[0]),
        target_user(policy),
        sink,
        _captures_dir(captures),
        _http_body(http_body),
    ).run()
