"""What runs in the forked child between fork and exec: confine, load the filter, hand over.

Order matters: process group and terminal first, then limits, namespaces and the privilege
drop, then PDEATHSIG (a credential change clears it), no_new_privs, the filter, and last the
hand-off of the listener, which the parent *takes* with pidfd_getfd (DESIGN §2.1: sending it
with sendmsg could block on our own filter). Errors go to the parent through `err_w` as one
line and end the child with 125/126/127; nothing here may raise past `main`.
"""

from __future__ import annotations

import os
import resource
import signal
from dataclasses import dataclass

from bubble.policy import Policy
from bubble.sandbox import _abi, caps, landlock, netns, wire
from bubble.sandbox import filter as bpf_filter
from bubble.sandbox._libc import map_own_ids, prctl, unshare

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from bubble.sandbox.layerplan import Layout


@dataclass(frozen=True, slots=True)
class ChildPlan:
    """Everything the child needs, prepared by the parent before fork."""

    policy: Policy
    path: str  # resolved program
    argv: list[str]
    bpf: bytes  # built by the keeper, which knows its own pid
    omit: frozenset[str]  # rows left out of the filter (test hook)
    parent_pid: int  # who must still be our parent once PDEATHSIG is armed
    uid: int | None  # drop to this uid/gid (None: keep ours)
    gid: int | None
    fallback_cwd: str | None
    ready_w: int
    go_r: int
    err_w: int
    # (fs rights, net rights, scopes) to restrict, and the write scopes that keep fs rights
    landlock: tuple[int, int, int, tuple[str, ...]]
    stdio: tuple[int, int] | None  # replacement stdout/stderr (output limit), or None
    cgroup: bool  # the parent puts us in a cgroup that limits memory
    layer: Layout | None = None  # --fs-overlay: the layer to build and enter
    netns: bool = False  # build the network wall (netns.plan said the kernel allows it)
    netns_fd: int = -1  # the wall made ahead by the fork server, to join (netns.make_spare)


def _fail(err_w: int, code: int, message: str) -> None:
    try:
        wire.send(err_w, wire.Failed(code, message))
    finally:
        os._exit(code)


def _others_of(uid: int) -> int:
    """Processes whose real uid is `uid` (zombies included) that exist before the target."""
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    count += 1
            except OSError:
                pass  # gone meanwhile
    return count


def _limits(policy: Policy, in_cgroup: bool, uid: int | None = None) -> None:
    # The kernel writes core dumps on the target's behalf, past any syscall filter. 1, not 0:
    # a core_pattern pipe helper ignores RLIMIT_CORE except the value 1, and a file dump
    # needs at least a page, so 1 stops both.
    resource.setrlimit(resource.RLIMIT_CORE, (1, 1))
    if policy.memory and not in_cgroup:
        # Without a cgroup, the address space is the only memory a process can be capped on.
        resource.setrlimit(resource.RLIMIT_AS, (policy.memory, policy.memory))
    if policy.cpu:
        resource.setrlimit(resource.RLIMIT_CPU, (policy.cpu, policy.cpu + 1))
    if policy.max_procs:
        # RLIMIT_NPROC counts every process of the uid on the machine: others of the
        # target's uid (another run, a zombie nobody reaps) would eat the run's allowance and
        # keep the tree below --max-procs, so the run only ended at --timeout (seen: one stale
        # `nobody` zombie did it). Raised by their number, counted as the run starts.
        limit = policy.max_procs + (_others_of(uid) if uid is not None else 0)
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))


def _foreground() -> None:
    """Give the terminal to the target's new process group, if we hold it."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgid(os.getppid()):
            old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            os.tcsetpgrp(0, os.getpgrp())
            signal.signal(signal.SIGTTOU, old)
    except OSError:
        pass  # no terminal or not ours: nothing to hand over


def _user_namespace() -> None:
    """Non-root --pidns: a user namespace mapping our uid to itself gives us CAP_SYS_ADMIN
    over the new PID namespace without changing who we are."""
    unshare(_abi.CLONE_NEWUSER | _abi.CLONE_NEWPID)
    map_own_ids()


def _close_fds(keep: set[int]) -> None:
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 20)


_FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def _init(target: int, err_w: int) -> None:
    """PID 1 of the namespace: forward signals to the target, reap everyone, report the
    target's raw wait status to the supervisor, and exit (which ends the namespace).
    The forwarded signals arrive blocked (see `main`): one sent before the handlers exist is
    delivered when they are unblocked, not dropped by init's default-ignore rule."""
    for sig in _FORWARDED:
        signal.signal(sig, lambda s, _f: os.kill(target, s))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == target:
            wire.send(err_w, wire.InitStatus(status))
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _keep_root_powers(policy: Policy) -> None:
    """--keep-root keeps uid 0 but not the administrative capabilities (unless --keep-caps):
    after the PID namespace, which needs CAP_SYS_ADMIN, and before exec."""
    if policy.keep_root and not policy.keep_caps and os.geteuid() == 0:
        caps.drop_admin()


def main(plan: ChildPlan) -> None:
    """Never returns: execs the target or exits."""
    policy = plan.policy
    try:
        # The parent made itself non-dumpable; we inherit that, which would make our own
        # /proc/self files root-owned (no uid_map) and keep the parent from taking the listener.
        prctl(_abi.PR_SET_DUMPABLE, 1)
        signal.set_wakeup_fd(-1)  # the supervisor's; its pipe is not ours to write
        os.setpgid(0, 0)
        _foreground()
        for sig in (
            signal.SIGPIPE,
            signal.SIGXFSZ,
            signal.SIGINT,
            signal.SIGTERM,
            signal.SIGCHLD,
            signal.SIGTTOU,
            signal.SIGTTIN,
        ):
            signal.signal(sig, signal.SIG_DFL)  # Python ignores some; exec keeps SIG_IGN
        _limits(policy, plan.cgroup, plan.uid)
        layer = -1  # the layer's tmpfs, for the parent to take; closed before exec
        if plan.layer is not None:
            from bubble.sandbox import overlay  # only when asked: start-up time

            # Before the other namespaces and the privilege drop: building it needs
            # CAP_SYS_ADMIN, as root or in its own user namespace (target root in the layer).
            layer = overlay.enter(plan.layer, userns=plan.uid is None)
        if policy.pidns:
            if os.getuid() == 0:
                unshare(_abi.CLONE_NEWPID)
            else:
                _user_namespace()
        if plan.netns:
            # Before the privilege drop: making the namespace needs root or a user namespace.
            netns.enter(policy, plan.netns_fd)
        if plan.uid is not None and plan.gid is not None:
            os.setgroups([])
            os.setgid(plan.gid)
            os.setuid(plan.uid)
        _keep_root_powers(policy)
        prctl(_abi.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != plan.parent_pid:
            os._exit(125)  # the supervisor is already gone: never run unsupervised
        cwd = os.getcwd()
        if not os.access(".", os.R_OK | os.X_OK) and plan.fallback_cwd:
            os.chdir(plan.fallback_cwd)
            cwd = plan.fallback_cwd
        if plan.stdio:
            os.dup2(plan.stdio[0], 1)
            os.dup2(plan.stdio[1], 2)
        _close_fds({plan.ready_w, plan.go_r, plan.err_w, layer})
        prctl(_abi.PR_SET_NO_NEW_PRIVS, 1)
        landlock.restrict(*plan.landlock)
        prctl(_abi.PR_SET_DUMPABLE, 1)  # a uid change reset it: the parent must take the listener
        listener, killable = bpf_filter.load(plan.bpf, policy.diagnose)
    except OSError as err:
        _fail(plan.err_w, 125, f"sandbox set-up failed: {err}")
    except Exception as err:  # noqa: BLE001 - report anything, a child must never raise
        _fail(plan.err_w, 125, f"sandbox set-up failed: {err!r}")
    try:
        wire.send(plan.ready_w, wire.Ready(listener, killable, cwd, layer))
        if os.read(plan.go_r, 1) != b"G":
            os._exit(125)  # the parent gave up
        os.close(listener)
        if layer >= 0:
            os.close(layer)
        os.close(plan.ready_w)
        os.close(plan.go_r)
    except OSError:
        os._exit(125)  # never fall back into the parent's code in a forked child
    if policy.pidns:
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        init_pid = os.fork()
        if init_pid:
            # Between the supervisor and the namespace: wait for init, exit like it.
            _, status = os.waitpid(init_pid, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        # init dies with its parent, and the namespace with it.
        prctl(_abi.PR_SET_PDEATHSIG, signal.SIGKILL)
        target = os.fork()
        if target:
            _init(target, plan.err_w)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)  # the target: a clean mask
    try:
        os.execve(plan.path, plan.argv, os.environ)
    except OSError as err:
        code = 127 if err.errno == 2 else 126
        _fail(plan.err_w, code, f"cannot execute {plan.path}: {err.strerror}")
