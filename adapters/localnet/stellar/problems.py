"""Horizon's problem+json error documents (RFC 7807), with Horizon's type URLs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stellar_sdk import xdr as x

from adapters.localnet.stellar.codes import result_codes

TYPE_PREFIX = "https://stellar.org/horizon-errors/"


@dataclass(frozen=True)
class Problem:
    status: int
    type: str
    title: str
    detail: str
    extras: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": TYPE_PREFIX + self.type,
            "title": self.title,
            "status": self.status,
        }
        if self.detail:  # Horizon omits an empty detail
            doc["detail"] = self.detail
        if self.extras:
            doc["extras"] = self.extras
        return doc


def not_found() -> Problem:
    return Problem(
        404,
        "not_found",
        "Resource Missing",
        "The resource at the url requested was not found.  This usually occurs for one of "
        "two reasons:  The url requested is not valid, or no data in our database could be "
        "found with the parameters provided.",
    )


def bad_request(field_name: str, reason: str) -> Problem:
    return Problem(
        400,
        "bad_request",
        "Bad Request",
        "The request you sent was invalid in some way.",
        {"invalid_field": field_name, "reason": reason},
    )


def transaction_malformed(envelope: str) -> Problem:
    return Problem(
        400,
        "transaction_malformed",
        "Transaction Malformed",
        "Horizon could not decode the transaction envelope in this request. A transaction "
        "should be an XDR TransactionEnvelope struct encoded using base64.  The envelope "
        "read from this request is echoed in the `extras.envelope_xdr` field of this "
        "response for your convenience.",
        {"envelope_xdr": envelope},
    )


def transaction_failed(envelope: str, result: x.TransactionResult) -> Problem:
    return Problem(
        400,
        "transaction_failed",
        "Transaction Failed",
        "The transaction failed when submitted to the stellar network. The "
        "`extras.result_codes` field on this response contains further details.",
        {
            "envelope_xdr": envelope,
            "result_xdr": result.to_xdr(),
            "result_codes": result_codes(result),
        },
    )


def submission_timeout(tx_hash: str, envelope: str) -> Problem:
    # Horizon's own type for this case; it does not mean the transaction failed.
    return Problem(
        504,
        "transaction_submission_timeout",
        "Transaction Submission Timeout",
        "Your transaction submission request has timed out. This does not necessarily mean "
        "the submission has failed. Before resubmitting, please use the transaction hash "
        "provided in `extras.hash` to poll the GET /transactions endpoint for sometime and "
        "check if it was included in a ledger.",
        {"hash": tx_hash, "envelope_xdr": envelope},
    )


def unsupported_media_type() -> Problem:
    return Problem(
        415,
        "unsupported_media_type",
        "Unsupported Media Type",
        "The request has an unsupported content type. Presently, the only supported content "
        "type is application/x-www-form-urlencoded.",
    )


def injected(status: int) -> Problem:
    """The problem a real Horizon answers with for an HTTP status the fault injector picks."""
    kinds = {
        429: ("rate_limit_exceeded", "Rate Limit Exceeded"),
        500: ("server_error", "Internal Server Error"),
        502: ("bad_gateway", "Bad Gateway"),
        503: ("service_unavailable", "Service Unavailable"),
    }
    kind, title = kinds[status]
    return Problem(status, kind, title, "Injected by the local network's fault handle.")


def before_history() -> Problem:
    return Problem(
        410,
        "before_history",
        "Data Requested Is Before Recorded History",
        "This horizon instance is configured to only track a portion of the stellar "
        "network's latest history. This request is asking for results prior to the "
        "recorded history known to this horizon instance.",
    )


def not_acceptable() -> Problem:
    """What Horizon answers when a route cannot give the asked-for content type (an
    event stream of a resource that does not stream)."""
    return Problem(
        406,
        "not_acceptable",
        "An acceptable response content-type could not be provided for this request",
        "",
    )


def server_error() -> Problem:
    return Problem(
        500,
        "server_error",
        "Internal Server Error",
        "An error occurred while processing this request.",
    )
