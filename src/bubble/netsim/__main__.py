"""`python -m bubble.netsim --records-fd N --ready-fd M [--captures DIR]`: the simulated
internet on its own, in the current network namespace (tests start it in one they made)."""

from __future__ import annotations

import argparse
import sys

from bubble.netsim.record import Limits
from bubble.netsim.server import Config, main

parser = argparse.ArgumentParser(prog="python -m bubble.netsim")
parser.add_argument("--records-fd", type=int, required=True)
parser.add_argument("--ready-fd", type=int, required=True)
parser.add_argument("--captures")
parser.add_argument("--no-tls", action="store_true", help="keep ClientHellos, do not terminate")
for name, kind in (("idle", float), ("lifetime", float), ("connections", int)):
    parser.add_argument(f"--{name}", type=kind, default=getattr(Limits(), name))
args = parser.parse_args()
sys.exit(
    main(
        Config(
            records_fd=args.records_fd,
            ready_fd=args.ready_fd,
            captures=args.captures,
            terminate_tls=not args.no_tls,
            routes=True,
            limits=Limits(idle=args.idle, lifetime=args.lifetime, connections=args.connections),
        )
    )
)
