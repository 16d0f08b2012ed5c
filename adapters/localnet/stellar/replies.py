"""The node's answers as HTTP replies.

The node builds them (Horizon's routes minus the HTTP) and the HTTP front writes them;
neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stellar_sdk import xdr as x

from adapters.localnet.stellar import problems
from adapters.localnet.stellar.ledger import AddStatus

#: Horizon's HTTP status for each stellar-core status relayed by POST /transactions_async
#: (stellar/go support/render/httpjson: coreStatusToHTTPStatus)
ASYNC_HTTP_STATUS = {
    AddStatus.PENDING: 201,
    AddStatus.DUPLICATE: 409,
    AddStatus.TRY_AGAIN_LATER: 503,
    AddStatus.ERROR: 400,
}


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status and JSON body, or `drop` to close the connection unanswered.
    A body is a problem+json document when `status` is 400 or more, unless `problem` is
    False (the asynchronous submission's answers carry a core status, not a problem)."""

    status: int
    body: dict[str, Any]
    drop: bool = False
    problem: bool = True

    @classmethod
    def of(cls, problem: problems.Problem) -> Reply:
        return cls(problem.status, problem.body())

    @classmethod
    def async_status(
        cls, status: AddStatus, tx_hash: str, result: x.TransactionResult | None = None
    ) -> Reply:
        """Horizon's AsyncTransactionSubmissionResponse; `error_result_xdr` only for ERROR."""
        body: dict[str, Any] = {"tx_status": status.value, "hash": tx_hash}
        if status == AddStatus.ERROR:
            assert result is not None
            body["error_result_xdr"] = result.to_xdr()
        return cls(ASYNC_HTTP_STATUS[status], body, problem=False)
