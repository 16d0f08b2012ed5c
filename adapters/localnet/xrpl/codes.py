"""Transaction engine results (TER) as rippled reports them.

A result is named by its token (``tecNO_PERMISSION``); the number is the protocol's
(``TER.h``), read from the definitions file xrpl-py ships so the two cannot drift; the
message is rippled's human text (``TER.cpp``), which clients show as
``engine_result_message``.

Classes, by numeric range:

- ``tes`` (0): applied, success.
- ``tec`` (100..255): applied as a failure: fee claimed, sequence or ticket consumed.
- ``tel`` (-399..-300), ``tem`` (-299..-200), ``tef`` (-199..-100): not applied, no fee.
- ``ter`` (-99..-1): not applied now, might apply later (e.g. ``terPRE_SEQ``).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Final

_MESSAGES: Final[dict[str, str]] = {
    "tesSUCCESS": "The transaction was applied. Only final in a validated ledger.",
    "tecDIR_FULL": "Can not add entry to full directory.",
    "tecDST_TAG_NEEDED": "A destination tag is required.",
    "tecCRYPTOCONDITION_ERROR": "Malformed, invalid, or mismatched conditional or fulfillment.",
    "tecDUPLICATE": "Ledger object already exists.",
    "tecFROZEN": "Asset is frozen.",
    "tecINSUFFICIENT_FUNDS": "Not enough funds available to complete requested transaction.",
    "tecINSUFFICIENT_RESERVE": "Insufficient reserve to complete requested operation.",
    "tecINSUF_RESERVE_LINE": "Insufficient reserve to add trust line.",
    "tecINTERNAL": "An internal error has occurred during processing.",
    "tecLIMIT_EXCEEDED": "Limit exceeded.",
    "tecNEED_MASTER_KEY": "The operation requires the use of the Master Key.",
    "tecNO_AUTH": "Not authorized to hold asset.",
    "tecNO_DST": "Destination does not exist. Send XRP to create it.",
    "tecNO_DST_INSUF_XRP": "Destination does not exist. Too little XRP sent to create it.",
    "tecNO_ENTRY": "No matching entry found.",
    "tecNO_ISSUER": "Issuer account does not exist.",
    "tecNO_LINE": "No such line.",
    "tecNO_LINE_INSUF_RESERVE": "No such line. Too little reserve to create it.",
    "tecNO_LINE_REDUNDANT": "Can't set non-existent line to default.",
    "tecNO_PERMISSION": "No permission to perform requested operation.",
    "tecNO_TARGET": "Target account does not exist.",
    "tecOWNERS": "Non-zero owner count.",
    "tecPATH_DRY": "Path could not send partial amount.",
    "tecPATH_PARTIAL": "Path could not send full amount.",
    "tecPRECISION_LOSS": "The amounts used by the transaction cannot interact.",
    "tecUNFUNDED": "Not enough XRP to satisfy the reserve requirement.",
    "tecUNFUNDED_PAYMENT": "Insufficient XRP balance to send.",
    "tefALREADY": "The exact transaction was already in this ledger.",
    "tefBAD_AUTH": "Transaction's public key is not authorized.",
    "tefBAD_AUTH_MASTER": "Auth for unclaimed account needs correct master key.",
    "tefFAILURE": "Failed to apply.",
    "tefINTERNAL": "Internal error.",
    "tefMASTER_DISABLED": "Master key is disabled.",
    "tefMAX_LEDGER": "Ledger sequence too high.",
    "tefNOT_MULTI_SIGNING": "Account has no appropriate list of multi-signers.",
    "tefNO_AUTH_REQUIRED": "Auth is not required.",
    "tefNO_TICKET": "Ticket is not in ledger.",
    "tefPAST_SEQ": "This sequence number has already passed.",
    "telBAD_DOMAIN": "Domain too long.",
    "telBAD_PUBLIC_KEY": "Public key is not valid.",
    "telCAN_NOT_QUEUE": "Can not queue at this time.",
    "telCAN_NOT_QUEUE_FEE": (
        "Can not queue at this time: fee insufficient to replace queued transaction."
    ),
    "telCAN_NOT_QUEUE_FULL": "Can not queue at this time: queue is full.",
    "telINSUF_FEE_P": "Fee insufficient.",
    "telLOCAL_ERROR": "Local failure.",
    "telNETWORK_ID_MAKES_TX_NON_CANONICAL": (
        "Transactions submitted to this node/network must NOT include a NetworkID field."
    ),
    "telNO_DST_PARTIAL": "Partial payment to create account not allowed.",
    "telREQUIRES_NETWORK_ID": (
        "Transactions submitted to this node/network must include a correct NetworkID field."
    ),
    "telWRONG_NETWORK": (
        "Transaction specifies a Network ID that differs from that of the local node."
    ),
    "temBAD_AMOUNT": "Malformed: Bad amount.",
    "temBAD_CURRENCY": "Malformed: Bad currency.",
    "temBAD_EXPIRATION": "Malformed: Bad expiration.",
    "temBAD_FEE": "Invalid fee, negative or not XRP.",
    "temBAD_LIMIT": "Limits must be non-negative.",
    "temBAD_SEND_XRP_LIMIT": "Malformed: Limit quality is not allowed for XRP to XRP.",
    "temBAD_SEND_XRP_MAX": "Malformed: Send max is not allowed for XRP to XRP.",
    "temBAD_SEND_XRP_NO_DIRECT": "Malformed: No Ripple direct is not allowed for XRP to XRP.",
    "temBAD_SEND_XRP_PARTIAL": "Malformed: Partial payment is not allowed for XRP to XRP.",
    "temBAD_SEND_XRP_PATHS": "Malformed: Paths are not allowed for XRP to XRP.",
    "temBAD_TICK_SIZE": "Malformed: Tick size out of range.",
    "temBAD_TRANSFER_RATE": "Malformed: Transfer rate must be >= 1.0 and <= 2.0",
    "temCANNOT_PREAUTH_SELF": "Malformed: An account may not preauthorize itself.",
    "temDISABLED": "The transaction requires logic that is currently disabled.",
    "temDST_IS_SRC": "Destination may not be source.",
    "temDST_NEEDED": "Destination not specified.",
    "temINVALID": "The transaction is ill-formed.",
    "temINVALID_ACCOUNT_ID": "Malformed: A field contains an invalid account ID.",
    "temINVALID_COUNT": "Malformed: Count field outside valid range.",
    "temINVALID_FLAG": "The transaction has an invalid flag.",
    "temMALFORMED": "Malformed transaction.",
    "temREDUNDANT": "The transaction is redundant.",
    "temSEQ_AND_TICKET": "Transaction contains a TicketSequence and a non-zero Sequence.",
    "terINSUF_FEE_B": "Account balance can't pay fee.",
    "terNO_ACCOUNT": "The source account does not exist.",
    "terNO_AUTH": "Not authorized to hold IOUs.",
    "terNO_LINE": "No such line.",
    "terPRE_SEQ": "Missing/inapplicable prior transaction.",
    "terPRE_TICKET": "Ticket is not yet in ledger.",
    "terQUEUED": "Held until escalated fee drops.",
    "terRETRY": "Retry transaction.",
}


@cache
def _result_numbers() -> dict[str, int]:
    path = resources.files("xrpl.core.binarycodec.definitions").joinpath("definitions.json")
    numbers: dict[str, int] = json.loads(path.read_text())["TRANSACTION_RESULTS"]
    return numbers


def is_known(token: str) -> bool:
    """True if ``token`` is a result code of the protocol (any class)."""
    return token in _result_numbers()


def code_of(token: str) -> int:
    """The protocol number of a result token; KeyError for an unknown token."""
    return _result_numbers()[token]


def message_of(token: str) -> str:
    """rippled's human message for a result, or ``-`` (rippled's own placeholder)."""
    return _MESSAGES.get(token, "-")


TES_SUCCESS: Final = "tesSUCCESS"


def is_success(token: str) -> bool:
    return token == TES_SUCCESS


def is_tec(token: str) -> bool:
    """Applied as a failure: the fee is claimed and the sequence (or ticket) consumed."""
    return 100 <= code_of(token) <= 255


def is_applied(token: str) -> bool:
    """tes and tec results are written into the ledger; every other class is not."""
    return is_success(token) or is_tec(token)


def is_retry(token: str) -> bool:
    return -99 <= code_of(token) <= -1
