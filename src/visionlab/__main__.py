"""``python -m visionlab ...``: the same command line as ``visionlab ...`` (and what ``torchrun -m`` runs)."""

from visionlab.cli import main

if __name__ == "__main__":
    main()
