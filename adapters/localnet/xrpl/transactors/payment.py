"""Payment: XRP directly, issued tokens over the trust lines of one issuer.

Supported paths are the default ones: issuer to holder, holder to issuer, and holder to
holder rippling through the issuer (allowed unless the issuer has NoRipple on both
lines). There is no path finding and no order book, so explicit ``Paths`` and
cross-currency payments are refused with ``temDISABLED``; no transfer fees exist here
because ``TransferRate`` cannot be set. Rules and result codes follow rippled's
``Payment.cpp``.
"""

from __future__ import annotations

from decimal import Decimal

from adapters.localnet.xrpl import hashing, protocol, trustlines
from adapters.localnet.xrpl.accounts import balance_drops, has_flag, read_account, write_account
from adapters.localnet.xrpl.amounts import IssuedAmount, is_bad_currency, is_positive
from adapters.localnet.xrpl.state import ApplyView
from adapters.localnet.xrpl.transactors.base import (
    TES,
    ApplyContext,
    LedgerContext,
    Transactor,
    Tx,
    safe_amount,
)


class Payment(Transactor):
    allowed_flags = protocol.PAYMENT_TF

    def preflight(self, tx: Tx) -> str:
        if "Destination" not in tx:
            return "temDST_NEEDED"
        amount = safe_amount(tx, "Amount")
        send_max = safe_amount(tx, "SendMax")
        deliver_min = safe_amount(tx, "DeliverMin")
        if amount is None or not is_positive(amount):
            return "temBAD_AMOUNT"
        if ("SendMax" in tx and (send_max is None or not is_positive(send_max))) or (
            "DeliverMin" in tx and (deliver_min is None or not is_positive(deliver_min))
        ):
            return "temBAD_AMOUNT"
        partial = bool(tx.flags & protocol.TF_PARTIAL_PAYMENT)
        if isinstance(amount, int):
            result = _preflight_xrp(tx, send_max)
        else:
            result = _preflight_issued(tx, amount, send_max)
        if result != TES:
            return result
        if tx.account == tx["Destination"] and "Paths" not in tx:
            return "temREDUNDANT"
        if deliver_min is not None and not partial:
            return "temBAD_AMOUNT"
        return TES

    def preclaim(self, tx: Tx, view: ApplyView, ctx: LedgerContext) -> str:
        amount = tx.amount("Amount")
        destination = read_account(view, tx["Destination"])
        if destination is None:
            if not isinstance(amount, int):
                return "tecNO_DST"
            if tx.flags & protocol.TF_PARTIAL_PAYMENT:
                return "telNO_DST_PARTIAL"
            if amount < ctx.fees.reserve_base_drops:
                return "tecNO_DST_INSUF_XRP"
        elif has_flag(destination, protocol.LSF_REQUIRE_DEST_TAG) and "DestinationTag" not in tx:
            return "tecDST_TAG_NEEDED"
        return TES

    def do_apply(self, tx: Tx, view: ApplyView, actx: ApplyContext) -> str:
        amount = tx.amount("Amount")
        if isinstance(amount, int):
            return _pay_xrp(tx, view, actx, amount)
        return _pay_issued(tx, view, amount)


def _preflight_xrp(tx: Tx, send_max: object) -> str:
    if send_max is not None:
        return "temBAD_SEND_XRP_MAX"
    if "Paths" in tx:
        return "temBAD_SEND_XRP_PATHS"
    if tx.flags & protocol.TF_PARTIAL_PAYMENT:
        return "temBAD_SEND_XRP_PARTIAL"
    if tx.flags & protocol.TF_LIMIT_QUALITY:
        return "temBAD_SEND_XRP_LIMIT"
    if tx.flags & protocol.TF_NO_RIPPLE_DIRECT:
        return "temBAD_SEND_XRP_NO_DIRECT"
    return TES


def _preflight_issued(tx: Tx, amount: IssuedAmount, send_max: object) -> str:
    if is_bad_currency(amount.currency):
        return "temBAD_CURRENCY"
    # No path finding or order books here: only same-token default paths.
    cross_currency = send_max is not None and (
        not isinstance(send_max, IssuedAmount) or send_max.currency != amount.currency
    )
    if "Paths" in tx or cross_currency:
        return "temDISABLED"
    return TES


def _pay_xrp(tx: Tx, view: ApplyView, actx: ApplyContext, drops: int) -> str:
    source = read_account(view, tx.account)
    assert source is not None
    reserve = actx.ctx.fees.account_reserve(int(source.get("OwnerCount", 0)))
    # rippled compares the balance before the fee with amount + max(reserve, fee).
    if actx.prior_balance_drops < drops + max(reserve, tx.fee_drops):
        return "tecUNFUNDED_PAYMENT"
    destination_address = str(tx["Destination"])
    destination = read_account(view, destination_address)
    if destination is None:
        # Accounts created since DeletableAccounts start at the ledger's sequence.
        destination = {
            "LedgerEntryType": "AccountRoot",
            "Account": destination_address,
            "Balance": "0",
            "Flags": 0,
            "OwnerCount": 0,
            "Sequence": actx.ctx.sequence,
        }
    source["Balance"] = str(balance_drops(source) - drops)
    destination["Balance"] = str(balance_drops(destination) + drops)
    write_account(view, source)
    write_account(view, destination)
    tx.delivered = drops
    return TES


def _pay_issued(tx: Tx, view: ApplyView, amount: IssuedAmount) -> str:
    source = tx.account
    destination = str(tx["Destination"])
    issuer = amount.issuer
    currency = amount.currency
    capacity = _capacity(view, source, destination, issuer, currency)
    partial = bool(tx.flags & protocol.TF_PARTIAL_PAYMENT)
    wanted = amount.value
    send_max = safe_amount(tx, "SendMax")
    if isinstance(send_max, IssuedAmount):
        capacity = min(capacity, send_max.value)
    if capacity <= 0:
        return "tecPATH_DRY"
    if capacity < wanted and not partial:
        return "tecPATH_PARTIAL"
    delivered = min(wanted, capacity)
    deliver_min = safe_amount(tx, "DeliverMin")
    if isinstance(deliver_min, IssuedAmount) and delivered < deliver_min.value:
        return "tecPATH_PARTIAL"
    if issuer in (source, destination):
        trustlines.ripple_credit(view, source, destination, currency, delivered)
    else:
        trustlines.ripple_credit(view, source, issuer, currency, delivered)
        trustlines.ripple_credit(view, issuer, destination, currency, delivered)
    tx.delivered = amount.with_value(delivered)
    return TES


def _capacity(
    view: ApplyView, source: str, destination: str, issuer: str, currency: str
) -> Decimal:
    """How much of the token the default path can carry (zero if there is no path)."""
    if source == issuer:
        return _room(view, destination, issuer, currency)
    if destination == issuer:
        return _holding(view, source, issuer, currency)
    line_in = trustlines.read_line(view, source, issuer, currency)
    line_out = trustlines.read_line(view, issuer, destination, currency)
    if line_in is None or line_out is None:
        return Decimal(0)
    if trustlines.no_ripple_blocks(line_in, line_out, issuer):
        return Decimal(0)
    return min(_holding(view, source, issuer, currency), _room(view, destination, issuer, currency))


def _holding(view: ApplyView, holder: str, issuer: str, currency: str) -> Decimal:
    line = trustlines.read_line(view, holder, issuer, currency)
    if line is None:
        return Decimal(0)
    return max(trustlines.balance_of(line, holder), Decimal(0))


def _room(view: ApplyView, holder: str, issuer: str, currency: str) -> Decimal:
    """How much more ``holder`` will accept from ``issuer`` under its trust limit."""
    if not _exists(view, holder):
        return Decimal(0)
    line = trustlines.read_line(view, holder, issuer, currency)
    if line is None:
        return Decimal(0)
    room = trustlines.limit_of(line, holder) - trustlines.balance_of(line, holder)
    return max(room, Decimal(0))


def _exists(view: ApplyView, address: str) -> bool:
    try:
        return view.exists(hashing.account_index(address))
    except ValueError:
        return False
