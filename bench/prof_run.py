"""`bubble` under cProfile, for bench/prof_flood.py and bench/prof_startup.py:

    python bench/prof_run.py OUT.prof [--thread NAME] -- run --events ... -- PROGRAM ...

`python -m cProfile` cannot profile a run: `bubble run` ends with `os._exit` (it skips the
interpreter's teardown, see cli.py), so cProfile never writes its file, and the supervisor
loop runs in a thread of its own, which cProfile does not follow. This wrapper dumps the
profile from `os._exit` itself (in this process only: forked children exit without writing)
and, with `--thread`, profiles only the thread of that name (`bubble-supervisor`: the loop).
"""

from __future__ import annotations

import cProfile
import os
import sys
import threading


def main() -> None:
    out, rest = sys.argv[1], sys.argv[2:]
    thread = None
    if rest[:1] == ["--thread"]:
        thread, rest = rest[1], rest[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    prof = cProfile.Profile()
    me = os.getpid()
    real_exit = os._exit

    def dump_and_exit(status: int) -> None:
        if os.getpid() == me:
            prof.disable()
            prof.dump_stats(out)
        real_exit(status)

    os._exit = dump_and_exit  # type: ignore[assignment]
    if thread is None:
        prof.enable()
    else:

        def start(*_args: object) -> None:
            sys.setprofile(None)
            if threading.current_thread().name == thread:
                prof.enable()  # this thread only: cProfile hooks the calling thread

        threading.setprofile(start)
    from bubble.cli import main as bubble_main

    status = bubble_main(rest)
    dump_and_exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
