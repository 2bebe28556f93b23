"""``python -m visionlab ...``: the same command line as ``visionlab ...`` (and what ``torchrun -m`` runs), with
the same exit status — 0 on success, non-zero on any failure (what torchrun, shells and CI read)."""

import sys

from visionlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
