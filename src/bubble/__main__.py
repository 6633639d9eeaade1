"""`python -m bubble ...`: the same entry point as the `bubble` console script."""

from bubble.cli import main

raise SystemExit(main())
