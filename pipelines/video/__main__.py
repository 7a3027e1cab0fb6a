"""``python -m pipelines.video``: the ``tag-video`` command."""
from .cli import main

raise SystemExit(main())
