"""EscrowCreate, EscrowFinish, EscrowCancel for XRP and trust-line tokens.

Follows rippled's ``Escrow.cpp`` with the TokenEscrow amendment enabled:

- Every time rule compares with the parent ledger's close time. A finish needs
  ``parent_close > FinishAfter`` and ``parent_close <= CancelAfter``; a cancel needs
  ``parent_close > CancelAfter``; a create needs both times not yet passed.
- A token escrow takes the tokens back to the issuer when created (the holder's line
  balance falls) and re-issues them on finish or cancel. The issuer must have
  ``lsfAllowTrustLineLocking``; the issuer itself cannot escrow its own token.
- The escrow is keyed by its owner and the sequence (or ticket) of the EscrowCreate.
- Without the TokenEscrow amendment a token EscrowCreate is ``temBAD_AMOUNT``.
- Issuer controls: a create needs the owner and the destination authorised
  (RequireAuth: ``tecNO_AUTH``/``tecNO_LINE``) and neither frozen (``tecFROZEN``); a
  finish needs the destination authorised and not deep-frozen; a cancel needs the owner
  authorised. A plain freeze does not stop a finish or a cancel.
- Transfer fees: the issuer's TransferRate is locked into the escrow at create time
  (``TransferRate``); a finish pays the destination amount ÷ rate (the lower of the
  locked and the current rate), the rest stays redeemed to the issuer. A cancel returns
  the full amount.
- DepositAuth: a finish delivering to a DepositAuth destination must be sent by the
  destination or by an account it preauthorised (``tecNO_PERMISSION``).

Credentials (``CredentialIDs``) are not built here.
"""

from __future__ import annotations

from decimal import Decimal

from adapters.localnet.xrpl import amendments, conditions, hashing, protocol, trustlines
from adapters.localnet.xrpl.accounts import (
    adjust_owner_count,
    balance_drops,
    has_flag,
    read_account,
    transfer_rate,
    verify_deposit_preauth,
    write_account,
)
from adapters.localnet.xrpl.amounts import (
    Amount,
    IssuedAmount,
    amount_to_json,
    is_bad_currency,
    is_positive,
    parse_amount,
    remove_rate,
)
from adapters.localnet.xrpl.state import ApplyView, JsonObject, dir_insert, dir_remove
from adapters.localnet.xrpl.transactors.base import (
    TES,
    ApplyContext,
    LedgerContext,
    Transactor,
    Tx,
    safe_amount,
)


def _blob(tx: Tx, field: str) -> bytes | None:
    raw = tx.get(field)
    if raw is None:
        return None
    try:
        return bytes.fromhex(str(raw))
    except ValueError:
        return b""


class EscrowCreate(Transactor):
    def preflight(self, tx: Tx) -> str:
        amount = safe_amount(tx, "Amount")
        if amount is None or not is_positive(amount):
            return "temBAD_AMOUNT"
        if isinstance(amount, IssuedAmount) and is_bad_currency(amount.currency):
            return "temBAD_CURRENCY"
        cancel_after = tx.get("CancelAfter")
        finish_after = tx.get("FinishAfter")
        if cancel_after is None and finish_after is None:
            return "temBAD_EXPIRATION"
        if cancel_after is not None and finish_after is not None and cancel_after <= finish_after:
            return "temBAD_EXPIRATION"
        # fix1571: without FinishAfter the escrow needs a condition, or it could be
        # finished by anyone at once.
        if finish_after is None and "Condition" not in tx:
            return "temMALFORMED"
        condition = _blob(tx, "Condition")
        if condition is not None and conditions.parse_condition(condition) is None:
            return "temMALFORMED"
        return TES

    def preclaim(self, tx: Tx, view: ApplyView, ctx: LedgerContext) -> str:
        amount = tx.amount("Amount")
        token = isinstance(amount, IssuedAmount)
        # rippled answers this in preflight; the amendment set is known here.
        if token and amendments.TOKEN_ESCROW not in ctx.amendments:
            return "temBAD_AMOUNT"
        if read_account(view, tx["Destination"]) is None:
            return "tecNO_DST"
        if isinstance(amount, IssuedAmount):
            return _token_lock_preclaim(view, tx.account, str(tx["Destination"]), amount)
        return TES

    def do_apply(self, tx: Tx, view: ApplyView, actx: ApplyContext) -> str:
        parent_close = actx.ctx.parent_close_time
        if "CancelAfter" in tx and parent_close > int(tx["CancelAfter"]):
            return "tecNO_PERMISSION"
        if "FinishAfter" in tx and parent_close > int(tx["FinishAfter"]):
            return "tecNO_PERMISSION"
        owner = read_account(view, tx.account)
        assert owner is not None
        amount = tx.amount("Amount")
        # The fee is already gone from this balance (rippled reads the account here).
        balance = balance_drops(owner)
        reserve = actx.ctx.fees.account_reserve(int(owner.get("OwnerCount", 0)) + 1)
        if balance < reserve:
            return "tecINSUFFICIENT_RESERVE"
        if isinstance(amount, int) and balance < reserve + amount:
            return "tecUNFUNDED"
        destination_address = str(tx["Destination"])
        destination = read_account(view, destination_address)
        assert destination is not None
        if has_flag(destination, protocol.LSF_REQUIRE_DEST_TAG) and "DestinationTag" not in tx:
            return "tecDST_TAG_NEEDED"

        index = hashing.escrow_index(tx.account, tx.sequence_value)
        escrow: JsonObject = {
            "LedgerEntryType": "Escrow",
            "Account": tx.account,
            "Amount": amount_to_json(amount),
            "Destination": destination_address,
            "Flags": 0,
        }
        for field in ("Condition", "CancelAfter", "FinishAfter", "SourceTag", "DestinationTag"):
            if field in tx:
                escrow[field] = tx[field]
        escrow["OwnerNode"] = dir_insert(view, tx.account, index)
        if destination_address != tx.account:
            escrow["DestinationNode"] = dir_insert(view, destination_address, index)
        if isinstance(amount, IssuedAmount):
            _link_token_escrow(view, escrow, index, amount)
        view.write(index, escrow)

        owner = read_account(view, tx.account)
        assert owner is not None
        if isinstance(amount, int):
            owner["Balance"] = str(balance_drops(owner) - amount)
        adjust_owner_count(owner, 1)
        write_account(view, owner)
        if isinstance(amount, IssuedAmount):
            trustlines.ripple_credit(view, tx.account, amount.issuer, amount.currency, amount.value)
        return TES


def _link_token_escrow(
    view: ApplyView, escrow: JsonObject, index: str, amount: IssuedAmount
) -> None:
    if amount.issuer not in (escrow["Account"], escrow["Destination"]):
        # Token escrows are listed with the issuer too, which tracks what is locked.
        escrow["IssuerNode"] = dir_insert(view, amount.issuer, index)
    # The fee the finish will charge is fixed now: a later rise cannot touch it.
    rate = transfer_rate(view, amount.issuer)
    if rate != protocol.TRANSFER_RATE_PARITY:
        escrow["TransferRate"] = rate


def _token_lock_preclaim(
    view: ApplyView, account: str, destination: str, amount: IssuedAmount
) -> str:
    if amount.issuer == account:
        return "tecNO_PERMISSION"
    issuer = read_account(view, amount.issuer)
    if issuer is None:
        return "tecNO_ISSUER"
    if not has_flag(issuer, protocol.LSF_ALLOW_TRUST_LINE_LOCKING):
        return "tecNO_PERMISSION"
    line = trustlines.read_line(view, account, amount.issuer, amount.currency)
    if line is None:
        return "tecNO_LINE"
    for party in (account, destination):
        result = trustlines.require_auth(view, party, amount.issuer, amount.currency)
        if result != TES:
            return result
    for party in (account, destination):
        if trustlines.is_frozen(view, party, amount.issuer, amount.currency):
            return "tecFROZEN"
    spendable = trustlines.balance_of(line, account)
    if spendable <= 0 or spendable < amount.value:
        return "tecINSUFFICIENT_FUNDS"
    return TES


def _read_escrow(view: ApplyView, tx: Tx) -> tuple[str, JsonObject | None]:
    owner = str(tx.get("Owner", ""))
    sequence = tx.get("OfferSequence")
    try:
        index = hashing.escrow_index(owner, int(sequence))
    except (TypeError, ValueError):
        return "", None
    return index, view.read(index)


class EscrowFinish(Transactor):
    def preflight(self, tx: Tx) -> str:
        if ("Condition" in tx) != ("Fulfillment" in tx):
            return "temMALFORMED"
        return TES

    def base_fee_drops(self, tx: Tx, ctx: LedgerContext) -> int:
        base = ctx.fees.base_fee_drops
        fulfillment = _blob(tx, "Fulfillment")
        if fulfillment is None:
            return base
        # rippled: base fee plus base × (32 + size/16), size in bytes, integer division.
        return base + base * (32 + len(fulfillment) // 16)

    def preclaim(self, tx: Tx, view: ApplyView, ctx: LedgerContext) -> str:
        _, escrow = _read_escrow(view, tx)
        if escrow is None:
            return "tecNO_TARGET"
        amount = parse_amount(escrow["Amount"])
        destination = str(escrow["Destination"])
        if not isinstance(amount, IssuedAmount) or destination == amount.issuer:
            return TES
        result = trustlines.require_auth(view, destination, amount.issuer, amount.currency)
        if result != TES:
            return result
        # A plain freeze still lets a holder receive; a deep freeze does not.
        if trustlines.is_deep_frozen(view, destination, amount.issuer, amount.currency):
            return "tecFROZEN"
        return TES

    def do_apply(self, tx: Tx, view: ApplyView, actx: ApplyContext) -> str:
        index, escrow = _read_escrow(view, tx)
        assert escrow is not None
        now = actx.ctx.parent_close_time
        if "FinishAfter" in escrow and not now > int(escrow["FinishAfter"]):
            return "tecNO_PERMISSION"
        if "CancelAfter" in escrow and now > int(escrow["CancelAfter"]):
            return "tecNO_PERMISSION"
        tx_condition = _blob(tx, "Condition")
        if tx_condition is not None:
            fulfillment = _blob(tx, "Fulfillment") or b""
            if not conditions.fulfills(fulfillment, tx_condition):
                return "tecCRYPTOCONDITION_ERROR"
        escrow_condition = escrow.get("Condition")
        if escrow_condition is None and tx_condition is not None:
            return "tecCRYPTOCONDITION_ERROR"
        if escrow_condition is not None and (
            tx_condition is None or bytes.fromhex(escrow_condition) != tx_condition
        ):
            return "tecCRYPTOCONDITION_ERROR"
        destination = str(escrow["Destination"])
        destination_root = read_account(view, destination)
        if destination_root is None:
            return "tecNO_DST"
        # The submitter is who delivers: a DepositAuth destination must accept it.
        result = verify_deposit_preauth(view, tx.account, destination_root)
        if result != TES:
            return result
        amount = parse_amount(escrow["Amount"])
        return _release(
            view,
            escrow,
            index,
            amount,
            receiver=destination,
            submitter=tx.account,
            actx=actx,
            locked_rate=int(escrow.get("TransferRate", protocol.TRANSFER_RATE_PARITY)),
        )


class EscrowCancel(Transactor):
    def preclaim(self, tx: Tx, view: ApplyView, ctx: LedgerContext) -> str:
        _, escrow = _read_escrow(view, tx)
        if escrow is None:
            return "tecNO_TARGET"
        amount = parse_amount(escrow["Amount"])
        if isinstance(amount, IssuedAmount):
            owner = str(escrow["Account"])
            return trustlines.require_auth(view, owner, amount.issuer, amount.currency)
        return TES

    def do_apply(self, tx: Tx, view: ApplyView, actx: ApplyContext) -> str:
        index, escrow = _read_escrow(view, tx)
        assert escrow is not None
        if "CancelAfter" not in escrow:
            return "tecNO_PERMISSION"
        if not actx.ctx.parent_close_time > int(escrow["CancelAfter"]):
            return "tecNO_PERMISSION"
        amount = parse_amount(escrow["Amount"])
        return _release(
            view,
            escrow,
            index,
            amount,
            receiver=str(escrow["Account"]),
            submitter=tx.account,
            actx=actx,
            # A cancel returns everything: EscrowCancel passes parityRate as the lock.
            locked_rate=protocol.TRANSFER_RATE_PARITY,
        )


def _release(
    view: ApplyView,
    escrow: JsonObject,
    index: str,
    amount: Amount,
    *,
    receiver: str,
    submitter: str,
    actx: ApplyContext,
    locked_rate: int,
) -> str:
    """Delete the escrow and pay ``amount`` to ``receiver`` (destination or owner).

    ``locked_rate`` caps the transfer fee on tokens: the rate stored at create time for
    a finish, parity (no fee) for a cancel.
    """
    owner = str(escrow["Account"])
    destination = str(escrow["Destination"])
    dir_remove(view, owner, index)
    if "DestinationNode" in escrow:
        dir_remove(view, destination, index)
    if isinstance(amount, int):
        receiver_root = read_account(view, receiver)
        assert receiver_root is not None
        receiver_root["Balance"] = str(balance_drops(receiver_root) + amount)
        write_account(view, receiver_root)
    else:
        result = _unlock_token(
            view,
            amount,
            receiver=receiver,
            submitter=submitter,
            actx=actx,
            locked_rate=locked_rate,
        )
        if result != TES:
            return result
        if "IssuerNode" in escrow:
            dir_remove(view, amount.issuer, index)
    owner_root = read_account(view, owner)
    assert owner_root is not None
    adjust_owner_count(owner_root, -1)
    write_account(view, owner_root)
    view.erase(index)
    return TES


def _unlock_token(
    view: ApplyView,
    amount: IssuedAmount,
    *,
    receiver: str,
    submitter: str,
    actx: ApplyContext,
    locked_rate: int,
) -> str:
    """Re-issue escrowed tokens to ``receiver`` (rippled's escrowUnlockApplyHelper).

    The fee is charged at the lower of ``locked_rate`` and the issuer's rate today, and
    comes out of the escrowed amount (unlike a payment, where it is added on top): the
    receiver gets amount ÷ rate, rounded up as rippled rounds it.
    """
    if receiver == amount.issuer:
        return TES  # the tokens already went back to the issuer when locked
    value = amount.value
    rate = min(locked_rate, transfer_rate(view, amount.issuer))
    if rate != protocol.TRANSFER_RATE_PARITY:
        value = remove_rate(value, rate, round_up=True)
    line = trustlines.read_line(view, receiver, amount.issuer, amount.currency)
    # Only a receiver that submits the transaction itself may have a line created for it.
    create_line = receiver == submitter
    if line is None:
        if not create_line:
            return "tecNO_LINE"
        receiver_root = read_account(view, receiver)
        assert receiver_root is not None
        owner_count = int(receiver_root.get("OwnerCount", 0))
        if actx.prior_balance_drops < actx.ctx.fees.account_reserve(owner_count + 1):
            return "tecNO_LINE_INSUF_RESERVE"
        trustlines.create_line(
            view,
            owner=receiver,
            peer=amount.issuer,
            currency=amount.currency,
            owner_limit=Decimal(0),
            owner_no_ripple=not has_flag(receiver_root, protocol.LSF_DEFAULT_RIPPLE),
        )
    elif not create_line:
        new_balance = trustlines.balance_of(line, receiver) + value
        if trustlines.limit_of(line, receiver) < new_balance:
            return "tecLIMIT_EXCEEDED"
    trustlines.ripple_credit(view, amount.issuer, receiver, amount.currency, value)
    return TES
