"""Applying one transaction to the open ledger: the checks every type shares.

The order is rippled's (``Transactor.cpp``, ``applySteps.cpp``): preflight (flags, fee
field, sequence/ticket form, network id, then the type's own checks), preclaim
(source account, sequence or ticket, LastLedgerSequence, duplicate, fee, signing key,
then the type's own checks), apply (take the fee, consume the sequence or ticket, run
the type; a ``tec`` keeps only the first two).
"""

from __future__ import annotations

from dataclasses import dataclass

from xrpl.core.binarycodec import encode_for_signing
from xrpl.core.keypairs import derive_classic_address

from adapters import xrpl_signatures
from adapters.localnet.xrpl import codes, hashing, protocol
from adapters.localnet.xrpl.accounts import (
    adjust_owner_count,
    balance_drops,
    has_flag,
    read_account,
    write_account,
)
from adapters.localnet.xrpl.amounts import AmountError, amount_to_json
from adapters.localnet.xrpl.state import ApplyView, JsonObject, LedgerState, dir_remove
from adapters.localnet.xrpl.transactors import TRANSACTORS
from adapters.localnet.xrpl.transactors.base import TES, ApplyContext, LedgerContext, Tx


@dataclass(frozen=True)
class ApplyOutcome:
    result: str
    meta: JsonObject | None  # present exactly when the transaction was applied (tes/tec)

    @property
    def applied(self) -> bool:
        return self.meta is not None


def signature_failure(tx_json: JsonObject) -> str | None:
    """Why a single-signed transaction's signature is unacceptable, or None if it is valid.

    The text is rippled's reason, reported as ``fails local checks: <reason>``.
    """
    public_key = str(tx_json.get("SigningPubKey", ""))
    if not public_key:
        return None if "Signers" in tx_json else "Empty SigningPubKey."
    signature = tx_json.get("TxnSignature")
    if not isinstance(signature, str) or not signature:
        return "Invalid signature."
    try:
        message = bytes.fromhex(encode_for_signing(tx_json))
        raw = bytes.fromhex(signature)
    # the codec raises assorted types on fields it cannot encode; such a transaction's
    # signature cannot verify, which is the answer we give
    except Exception:  # noqa: BLE001
        return "Invalid signature."
    valid = xrpl_signatures.verify(message, raw, public_key)
    return None if valid else "Invalid signature."


def apply_transaction(
    tx: Tx, state: LedgerState, ctx: LedgerContext, *, open_hashes: set[str], tx_index: int
) -> ApplyOutcome:
    """Apply ``tx`` to the open ledger ``state`` (in place when the result is tes/tec)."""
    transactor = TRANSACTORS.get(tx.type)
    if transactor is None:
        return ApplyOutcome("temDISABLED", None)
    result = _preflight(tx, ctx)
    if result == TES:
        result = transactor.preflight(tx)
    if result != TES:
        return ApplyOutcome(result, None)

    view = ApplyView(state)
    result = _preclaim(tx, view, ctx, open_hashes)
    if result == TES:
        result = transactor.preclaim(tx, view, ctx)
    if not codes.is_applied(result):
        return ApplyOutcome(result, None)

    source = read_account(view, tx.account)
    assert source is not None
    prior_balance = balance_drops(source)
    _take_fee_and_sequence(tx, view, source)
    checkpoint = view.checkpoint()
    if result == TES:
        result = transactor.do_apply(tx, view, ApplyContext(ctx, prior_balance))
    if codes.is_tec(result):
        view.restore(checkpoint)
        tx.delivered = None
    elif result != TES:
        return ApplyOutcome(result, None)

    affected = view.commit(tx.hash, ctx.sequence)
    meta: JsonObject = {
        "AffectedNodes": affected,
        "TransactionIndex": tx_index,
        "TransactionResult": result,
    }
    if tx.delivered is not None and tx.flags & protocol.TF_PARTIAL_PAYMENT:
        # The ledger records DeliveredAmount only for partial payments; the RPC layer
        # adds delivered_amount for every payment.
        meta["DeliveredAmount"] = amount_to_json(tx.delivered)
    return ApplyOutcome(result, meta)


def _preflight(tx: Tx, ctx: LedgerContext) -> str:
    transactor = TRANSACTORS[tx.type]
    if tx.flags & ~(protocol.TF_UNIVERSAL | transactor.allowed_flags):
        return "temINVALID_FLAG"
    try:
        if tx.fee_drops < 0:
            return "temBAD_FEE"
    except AmountError:
        return "temBAD_FEE"
    if tx.ticket_sequence is not None and tx.sequence != 0:
        return "temSEQ_AND_TICKET"
    if "Delegate" in tx:
        # The template allows it, but PermissionDelegation is not built here: as on a
        # network without the amendment (Transactor::preflight1), it is refused.
        return "temDISABLED"
    if "NetworkID" in tx:
        if ctx.network_id <= protocol.MAX_LEGACY_NETWORK_ID:
            return "telNETWORK_ID_MAKES_TX_NON_CANONICAL"
        if int(tx["NetworkID"]) != ctx.network_id:
            return "telWRONG_NETWORK"
    elif ctx.network_id > protocol.MAX_LEGACY_NETWORK_ID:
        return "telREQUIRES_NETWORK_ID"
    return TES


def _preclaim(tx: Tx, view: ApplyView, ctx: LedgerContext, open_hashes: set[str]) -> str:
    source = read_account(view, tx.account)
    if source is None:
        return "terNO_ACCOUNT"
    account_sequence = int(source["Sequence"])
    ticket = tx.ticket_sequence
    if tx.uses_ticket and ticket is not None:
        if not view.exists(hashing.ticket_index(tx.account, ticket)):
            return "terPRE_TICKET" if ticket >= account_sequence else "tefNO_TICKET"
    elif tx.sequence > account_sequence:
        return "terPRE_SEQ"
    elif tx.sequence < account_sequence:
        return "tefPAST_SEQ"
    if "LastLedgerSequence" in tx and int(tx["LastLedgerSequence"]) < ctx.sequence:
        return "tefMAX_LEDGER"
    if tx.hash in open_hashes:
        return "tefALREADY"
    fee = tx.fee_drops
    if fee < TRANSACTORS[tx.type].base_fee_drops(tx, ctx):
        return "telINSUF_FEE_P"
    if balance_drops(source) < fee:
        return "terINSUF_FEE_B"
    return _check_signing_key(tx, source)


def _check_signing_key(tx: Tx, source: JsonObject) -> str:
    public_key = str(tx.get("SigningPubKey", ""))
    if not public_key:
        return "tefNOT_MULTI_SIGNING"  # no account here has a signer list
    try:
        signer = derive_classic_address(public_key)
    except Exception:  # noqa: BLE001 - a malformed key cannot authorise anything
        return "tefBAD_AUTH"
    if signer == tx.account:
        if has_flag(source, protocol.LSF_DISABLE_MASTER):
            return "tefMASTER_DISABLED"
        return TES
    if source.get("RegularKey") == signer:
        return TES
    return "tefBAD_AUTH" if "RegularKey" in source else "tefBAD_AUTH_MASTER"


def _take_fee_and_sequence(tx: Tx, view: ApplyView, source: JsonObject) -> None:
    source["Balance"] = str(balance_drops(source) - tx.fee_drops)
    ticket = tx.ticket_sequence
    if tx.uses_ticket and ticket is not None:
        index = hashing.ticket_index(tx.account, ticket)
        dir_remove(view, tx.account, index)
        view.erase(index)
        adjust_owner_count(source, -1)
        remaining = int(source.get("TicketCount", 0)) - 1
        if remaining > 0:
            source["TicketCount"] = remaining
        else:
            source.pop("TicketCount", None)
    else:
        source["Sequence"] = int(source["Sequence"]) + 1
    write_account(view, source)
