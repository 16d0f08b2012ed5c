"""How Horizon writes a time and a claim predicate in JSON.

Shared by the resources (``horizon``) and the operation and effect records the ledger
keeps (``operation_records``, ``effect_records``); it imports none of them, so the
ledger's records do not depend on the resources built from them.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from stellar_sdk import xdr as x

Json = dict[str, Any]


def timestamp(unix_s: int) -> str:
    """``unix_s`` as Horizon's RFC 3339 time in UTC, to the second."""
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def predicate_json(pred: x.ClaimPredicate) -> Json:
    """Horizon's JSON for a stored predicate (relative times are already absolute)."""
    P = x.ClaimPredicateType
    kind = pred.type
    if kind == P.CLAIM_PREDICATE_UNCONDITIONAL:
        return {"unconditional": True}
    if kind == P.CLAIM_PREDICATE_AND:
        assert pred.and_predicates is not None
        return {"and": [predicate_json(p) for p in pred.and_predicates]}
    if kind == P.CLAIM_PREDICATE_OR:
        assert pred.or_predicates is not None
        return {"or": [predicate_json(p) for p in pred.or_predicates]}
    if kind == P.CLAIM_PREDICATE_NOT:
        assert pred.not_predicate is not None
        return {"not": predicate_json(pred.not_predicate)}
    if kind == P.CLAIM_PREDICATE_BEFORE_ABSOLUTE_TIME:
        assert pred.abs_before is not None
        epoch = pred.abs_before.int64
        doc: Json = {"abs_before_epoch": str(epoch)}
        # Beyond year 9999 Python cannot format the date; the epoch field still carries it.
        with contextlib.suppress(OverflowError, OSError, ValueError):
            doc["abs_before"] = timestamp(epoch)
        return doc
    assert pred.rel_before is not None
    return {"rel_before": str(pred.rel_before.int64)}
