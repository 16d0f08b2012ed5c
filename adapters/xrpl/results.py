"""XRP Ledger transaction results: what each code means for reliable submission.

rippled names every result with a class prefix, and the class decides everything the
engine needs (``TER.h``)::

    tes  applied, success                   final only in a validated ledger
    tec  applied as a failure: fee claimed, final only in a validated ledger
         sequence used
    ter  not applied now, may apply later   (terPRE_SEQ, terQUEUED, ...)
    tef  not applied: failed in the current ledger state
    tem  malformed: can never apply
    tel  refused by this server, locally    (load, fee, network id)

``submit_outcome`` reads the answer of ``submit`` (always provisional: a submit result
is the tentative application to one server's open ledger); ``ledger_outcome`` reads a
transaction in a validated ledger (final). Both are exhaustive over the classes; mypy
fails if one is added and left out.
"""

from __future__ import annotations

from enum import Enum
from typing import Final, assert_never

from adapters.chain import Applied, Outcome, Pending, Rejected


class ResultClass(Enum):
    SUCCESS = "tes"
    CLAIMED = "tec"
    RETRY = "ter"
    FAILED = "tef"
    MALFORMED = "tem"
    LOCAL = "tel"


def result_class(code: str) -> ResultClass | None:
    """The class of an XRPL result code, or None if ``code`` is not one."""
    try:
        return ResultClass(code[:3])
    except ValueError:
        return None


#: tef results that say "this blob, or another for its sequence or ticket, may already be
#: in a ledger": only the status by hash can tell whether it applied. A transaction on a
#: Ticket sent again after it applied finds its own ticket spent: tefNO_TICKET, as a
#: Sequence transaction finds tefPAST_SEQ.
MAYBE_APPLIED: Final = frozenset({"tefPAST_SEQ", "tefALREADY", "tefMAX_LEDGER", "tefNO_TICKET"})


def submit_outcome(code: str, tx_hash: str) -> Outcome:
    """What the ``engine_result`` of a submit means. Only ``tem`` (and ``tef`` other than
    MAYBE_APPLIED) are final here: no server, now or later, applies that blob.

    ``tel`` is deliberately not final: it is one server's local refusal, and if an
    earlier send of the same blob (whose answer was lost) is still in flight elsewhere,
    that copy can still apply. The blob's LastLedgerSequence makes it final by expiry.
    """
    match result_class(code):
        case None:
            return Pending(tx_hash, f"{code}: not an XRPL result; the status by hash decides")
        case ResultClass.SUCCESS | ResultClass.CLAIMED | ResultClass.RETRY:
            # in this server's open ledger, or held for a later one (terQUEUED, terPRE_SEQ)
            return Pending(
                tx_hash, f"{code}: provisional until a validated ledger holds it", held=True
            )
        case ResultClass.LOCAL:
            return Pending(tx_hash, f"{code}: refused by this server for now; final at expiry")
        case ResultClass.FAILED if code in MAYBE_APPLIED:
            return Pending(tx_hash, f"{code}: may already be in a ledger; check the status")
        case ResultClass.FAILED | ResultClass.MALFORMED:
            return Rejected(tx_hash, code, applied=False, detail="refused before any ledger")
        case unreachable:
            assert_never(unreachable)


def ledger_outcome(code: str, tx_hash: str, ledger_index: int, ledger_hash: str) -> Outcome:
    """What the result of a transaction in a validated ledger means: final, except a
    result no validated ledger can hold (the server is wrong; ask again)."""
    match result_class(code):
        case ResultClass.SUCCESS:
            return Applied(tx_hash, ledger_index, ledger_hash, code)
        case ResultClass.CLAIMED:
            return Rejected(
                tx_hash,
                code,
                applied=True,
                ledger_index=ledger_index,
                ledger_hash=ledger_hash,
                detail="in a validated ledger: fee claimed, sequence used, nothing else moved",
            )
        case (
            ResultClass.RETRY
            | ResultClass.FAILED
            | ResultClass.MALFORMED
            | ResultClass.LOCAL
            | None
        ):
            return Pending(tx_hash, f"{code}: impossible in a validated ledger; ask again")
        case unreachable:
            assert_never(unreachable)
