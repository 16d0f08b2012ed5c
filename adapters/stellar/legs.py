"""What a Stellar leg must satisfy: amounts, accounts, trustlines, reserves.

Pure functions over the leg and the account views Horizon gave; ``LegInvalid`` says
what is wrong in words an operator can act on.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from stellar_sdk import Asset as SdkAsset
from stellar_sdk import StrKey

from adapters.chain import Asset, ChainName, Leg
from adapters.errors import LegInvalid
from adapters.stellar.horizon import AccountView, LedgerHeader

STROOPS_PER_UNIT = 10_000_000
ONE_STROOP = Decimal(1) / STROOPS_PER_UNIT
MAX_AMOUNT = Decimal(2**63 - 1) / STROOPS_PER_UNIT  # amounts are int64 stroops


def check_shape(leg: Leg) -> SdkAsset:
    """What can be checked without asking the ledger; returns the SDK asset."""
    if leg.chain != ChainName.STELLAR:
        raise LegInvalid(f"a {leg.chain} leg given to the Stellar adapter")
    amount_text(leg.amount)
    for role, account_id in (("sender", leg.sender), ("receiver", leg.receiver)):
        if not StrKey.is_valid_ed25519_public_key(account_id):
            raise LegInvalid(f"{role} {account_id!r} is not a Stellar account id (G...)")
    if leg.sender == leg.receiver:
        raise LegInvalid("sender and receiver are the same account")
    if leg.asset.is_native:
        return SdkAsset.native()
    try:
        return SdkAsset(leg.asset.code, leg.asset.issuer)
    except ValueError as exc:
        raise LegInvalid(f"asset {leg.asset.code}:{leg.asset.issuer}: {exc}") from exc


def amount_text(amount: Decimal) -> str:
    """The amount as Stellar writes it (7 decimal places), or ``LegInvalid``."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise LegInvalid(f"amount {amount!r} is not a finite Decimal")
    if amount <= 0:
        raise LegInvalid(f"amount {amount} is not positive")
    try:
        exact = amount.quantize(ONE_STROOP)
    except InvalidOperation as exc:
        raise LegInvalid(f"amount {amount} is too large") from exc
    if exact != amount:
        raise LegInvalid(f"amount {amount} has more than 7 decimal places")
    if amount > MAX_AMOUNT:
        raise LegInvalid(f"amount {amount} exceeds Stellar's maximum {MAX_AMOUNT}")
    return f"{exact:f}"


def canonical(asset: Asset) -> str:
    return "native" if asset.is_native else f"{asset.code}:{asset.issuer}"


def check_can_receive(
    account: AccountView, role: str, asset: Asset, amount: Decimal, *, refused_at: str
) -> None:
    """``account`` can be credited ``amount`` of ``asset`` by the operation
    ``refused_at`` names: a trustline, fully authorised (a line authorised only to
    maintain liabilities cannot receive), with room under its limit. The issuer needs
    no line for its own asset."""
    assert asset.issuer is not None
    if account.account_id == asset.issuer:
        return
    who = f"{role} {account.account_id}"
    name = canonical(asset)
    line = account.lines.get((asset.code, asset.issuer))
    if line is None:
        raise LegInvalid(f"{who} has no trustline for {name} (op_no_trust at {refused_at})")
    if not line.authorized:
        state = (
            "is authorised only to maintain liabilities, not to receive"
            if line.maintains_liabilities_only
            else "is not authorised"
        )
        raise LegInvalid(
            f"{who}'s trustline for {name} {state} (op_not_authorized at {refused_at})"
        )
    room = line.limit - line.balance - line.buying_liabilities
    if room < amount:
        raise LegInvalid(
            f"{who}'s trustline for {name} can take {room} more {asset.code}, not {amount} "
            f"(op_line_full at {refused_at})"
        )


def check_holds_credit(sender: AccountView, asset: Asset, amount: Decimal) -> None:
    """The sender can lock ``amount`` of ``asset`` in a claimable balance: a trustline
    fully authorised (CreateClaimableBalance refuses one authorised only to maintain
    liabilities) holding the amount above its selling liabilities."""
    assert asset.issuer is not None
    if sender.account_id == asset.issuer:
        return
    who = f"sender {sender.account_id}"
    name = canonical(asset)
    at = "create_claimable_balance"
    line = sender.lines.get((asset.code, asset.issuer))
    if line is None:
        raise LegInvalid(f"{who} has no trustline for {name} (op_no_trust at {at})")
    if not line.authorized:
        raise LegInvalid(
            f"{who}'s trustline for {name} is not authorised (op_not_authorized at {at})"
        )
    spendable = line.balance - line.selling_liabilities
    if spendable < amount:
        raise LegInvalid(
            f"{who} holds {spendable} {asset.code}, not {amount} (op_underfunded at {at})"
        )


def available_native(account: AccountView, header: LedgerHeader) -> Decimal:
    """XLM above the account's minimum balance: (2 + subentries + sponsoring -
    sponsored) base reserves."""
    entries = 2 + account.subentry_count + account.num_sponsoring - account.num_sponsored
    minimum = Decimal(entries * header.base_reserve_stroops) / STROOPS_PER_UNIT
    return account.native_balance - account.native_selling_liabilities - minimum
