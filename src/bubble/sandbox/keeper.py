"""The keeper: a small process between the supervisor and the target.

It is the target's parent and a child subreaper, so the target and every descendant it leaves
behind stay in the keeper's subtree. Its parent-death signal is the point: if the supervisor
dies (even by SIGKILL), the keeper kills that whole subtree before anything can run on
unsupervised; with only PDEATHSIG on the target, a daemonised grandchild would survive.

It reports to the supervisor on a pipe (`wire`): `Forked` once the target is forked, `Reaped`
when the target is reaped. It exits once its subtree is empty.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal

from bubble.errors import BubbleError
from bubble.sandbox import _abi, bpfcache, child, tree, wire
from bubble.sandbox._libc import prctl


def start(plan: child.ChildPlan, report_w: int, close: tuple[int, ...]) -> int:
    """Fork the keeper (which forks the target); returns the keeper's pid. `close`: the
    supervisor's own descriptors, which the keeper must not hold."""
    pid = os.fork()
    if pid:
        return pid
    try:
        _main(plan, report_w, close)
    finally:
        os._exit(125)  # never fall back into the supervisor's code


def _end_subtree(_signum: int, _frame: object) -> None:
    tree.kill_tree(os.getpid())
    os._exit(1)


# The supervisor's own clock starts a little later (once the child is ready) and normally
# ends the run first, with its event; ours ends it when the supervisor cannot, e.g. while a
# target stalls one of its memory reads (issue 13, finding 5).
TIMEOUT_GRACE = 0.2  # seconds
KILL_RETRY = 0.2  # seconds between kill rounds once the time is up


def _arm_timeout(seconds: float, report_w: int) -> None:
    """Kill the subtree when --timeout runs out, and again every KILL_RETRY seconds (a fork
    bomb racing the kill); tell the supervisor once. Independent of the supervisor's loop."""
    told = False

    def expired(_signum: int, _frame: object) -> None:
        nonlocal told
        tree.kill_tree(os.getpid())
        if not told:
            told = True
            with contextlib.suppress(OSError):
                wire.send(report_w, wire.TimedOut())

    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds + TIMEOUT_GRACE, KILL_RETRY)


def _main(plan: child.ChildPlan, report_w: int, close: tuple[int, ...]) -> None:
    signal.set_wakeup_fd(-1)  # the supervisor's pipe
    for fd in close:
        os.close(fd)
    prctl(_abi.PR_SET_CHILD_SUBREAPER, 1)
    # Signals sent to the supervisor's process group (a shell's SIGTERM, SIGINT, SIGHUP) are
    # the supervisor's to act on: it kills the tree and we report as usual. Our own alarm is
    # a signal nobody sends a job, delivered when the supervisor dies.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_IGN if sig != signal.SIGCHLD else signal.SIG_DFL)
    signal.signal(signal.SIGUSR2, _end_subtree)
    prctl(_abi.PR_SET_PDEATHSIG, signal.SIGUSR2)
    if os.getppid() != plan.parent_pid:
        _end_subtree(0, None)  # the supervisor died before we could watch it
    try:
        # Built here, not in the supervisor: the filter must also refuse signals to us. From
        # the fork server's compiled templates when one fits (bpfcache), else compiled now.
        bpf = bpfcache.build(plan.policy, plan.parent_pid, os.getpgrp(), plan.omit, (os.getpid(),))
    except BubbleError as err:
        wire.send(plan.err_w, wire.Failed(125, str(err)))
        os._exit(125)
    plan = dataclasses.replace(plan, bpf=bpf)
    target = os.fork()
    if target == 0:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)  # the target starts with default dispositions
        child.main(dataclasses.replace(plan, parent_pid=os.getppid()))
    spare = (plan.netns_fd,) if plan.netns_fd >= 0 else ()
    for fd in (plan.ready_w, plan.go_r, plan.err_w, *(plan.stdio or ()), *spare):
        os.close(fd)
    wire.send(report_w, wire.Forked(target))
    if plan.policy.timeout:
        _arm_timeout(plan.policy.timeout, report_w)
    while True:
        try:
            pid, status, rusage = os.wait4(-1, 0)
        except ChildProcessError:
            os._exit(0)  # the subtree is empty
        if pid == target:
            wire.send(report_w, wire.Reaped(status, rusage.ru_maxrss))
