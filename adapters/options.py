"""``KEY=VALUE`` options, the one parser behind every such flag (``--model-option``, ``--solver-option``,
``--model-arg``) and the Python loaders that take option lists."""
from __future__ import annotations

import json
from typing import Any, Iterable


def parse_option(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> (key, value). VALUE is read as JSON when it parses (numbers, lists,
    true/false/null; ``True``/``False`` too), else kept as a string. ValueError for other forms."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_options(items: Iterable[str] | None) -> dict[str, Any]:
    """A list of ``KEY=VALUE`` strings -> dict (a later key wins)."""
    return dict(parse_option(item) for item in items or ())
