"""The ImageNet-1k class names, in the encoder's logit order (torch-free)."""
from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
from pathlib import Path


@functools.lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 human-readable ImageNet-1k class names, in logit order: torchvision's table, read
    from its source file (importing torchvision takes a second or more), else through its weights'
    metadata if that file has moved."""
    spec = importlib.util.find_spec("torchvision")  # finds the package without importing it
    table = Path(spec.submodule_search_locations[0], "models", "_meta.py") if spec else None
    with contextlib.suppress(OSError, SyntaxError, ValueError, AttributeError, TypeError):
        for node in ast.parse(table.read_text()).body:
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["_IMAGENET_CATEGORIES"]:
                names = tuple(ast.literal_eval(node.value))
                if len(names) == 1000:
                    return names
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
