"""JSON text as the adapters store event properties."""

from __future__ import annotations

import json
from typing import Any


def dumps(value: Any) -> str:
    # ensure_ascii=False keeps stored size equal to the UTF-8 bytes a client sent.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def loads(text: str) -> Any:
    return json.loads(text)
