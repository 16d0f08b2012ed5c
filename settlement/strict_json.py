"""JSON from outside the engine, parsed so that it can mean one thing only.

Python's ``json`` keeps the last of a key given twice in one object, so
``{"amount": "10", ..., "amount": "999999"}`` means 999999 to the engine while a
reviewer, a log or another parser reading the first occurrence sees 10. ``loads``
refuses such a document at any depth; every parse of JSON that crosses into the
engine (API request bodies and cursors, the client's responses, the CLI's files) goes
through it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class DuplicateKey(json.JSONDecodeError):
    """A key occurs twice in one object. A ``JSONDecodeError`` (so a ``ValueError``):
    callers that refuse malformed JSON refuse this too, with the key named."""


class _Repeated(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Repeated(key)
            seen.add(key)
    return found


def loads(document: str | bytes, *, parse_float: Callable[[str], Any] | None = None) -> Any:
    """``document`` parsed; ``DuplicateKey`` if any object in it has a key twice, a
    ``json.JSONDecodeError`` if it is not JSON."""
    try:
        return json.loads(document, object_pairs_hook=_unique_keys, parse_float=parse_float)
    except _Repeated as exc:
        text = document.decode("utf-8", "replace") if isinstance(document, bytes) else document
        raise DuplicateKey(f"duplicate key {exc.key!r}", text, 0) from exc
