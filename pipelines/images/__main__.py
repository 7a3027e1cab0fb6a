"""``python -m pipelines.images``: the ``caption-images`` command."""
from .cli import main

raise SystemExit(main())
