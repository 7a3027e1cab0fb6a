"""``python -m captioning.train`` (what torchrun runs) = ``caption-train``: see captioning.training.trainer."""
import sys

from .training.trainer import main

if __name__ == "__main__":
    sys.exit(main())
