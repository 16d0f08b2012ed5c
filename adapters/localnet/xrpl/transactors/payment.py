"""Payment: XRP directly, issued tokens over the trust lines of one issuer.

Supported paths are the default ones: issuer to holder, holder to issuer, and holder to
holder rippling through the issuer (allowed unless the issuer has NoRipple on both
lines). There is no path finding and no order book, so explicit ``Paths`` and
cross-currency payments are refused with ``temDISABLED``. Rules and result codes follow
rippled's ``Payment.cpp`` and, for the token path, the checks its payment engine makes
on each step (``DirectStep.cpp``, ``StepChecks.h``):

- a DepositAuth destination takes funds only from itself or a preauthorised sender
  (``tecNO_PERMISSION``), except a small XRP payment to an account at or below the base
  reserve, so that such an account can never be left unable to pay fees;
- a holder-to-holder step is blocked by the issuer's GlobalFreeze, by the issuer's
  freeze of the sender's line and by a deep freeze of either line; a payment straight
  to or from the issuer is one step and is never frozen;
- an issuer with RequireAuth cannot issue to a line it has not authorised;
- a blocked path is ``tecPATH_DRY``, as rippled turns its step errors into;
- holder to holder pays the issuer's TransferRate on top: the sender spends
  amount × rate (it needs a SendMax covering that), the receiver gets the amount and the
  difference is redeemed to the issuer.
"""

from __future__ import annotations

from decimal import Decimal

from adapters.localnet.xrpl import hashing, protocol, trustlines
from adapters.localnet.xrpl.accounts import (
    balance_drops,
    has_flag,
    read_account,
    transfer_rate,
    verify_deposit_preauth,
    write_account,
)
from adapters.localnet.xrpl.amounts import (
    IssuedAmount,
    apply_rate,
    is_bad_currency,
    is_positive,
    remove_rate,
)
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
    if destination is not None:
        # An account at or below the base reserve may always receive up to the base
        # reserve, or DepositAuth could leave it with too little XRP to pay any fee.
        base_reserve = actx.ctx.fees.reserve_base_drops
        if drops > base_reserve or balance_drops(destination) > base_reserve:
            result = verify_deposit_preauth(view, tx.account, destination)
            if result != TES:
                return result
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
    destination_root = read_account(view, destination)
    if destination_root is not None:
        result = verify_deposit_preauth(view, source, destination_root)
        if result != TES:
            return result
    if _path_blocked(view, source, destination, issuer, currency):
        return "tecPATH_DRY"
    through_issuer = issuer not in (source, destination)
    rate = transfer_rate(view, issuer) if through_issuer else protocol.TRANSFER_RATE_PARITY
    wanted = amount.value
    send_max = safe_amount(tx, "SendMax")
    # Without SendMax the sender spends at most Amount, so a fee makes it fall short.
    spend_limit = send_max.value if isinstance(send_max, IssuedAmount) else wanted
    can_spend = min(spend_limit, _source_limit(view, source, issuer, currency))
    room = _room(view, destination, issuer, currency) if destination != issuer else None
    target = wanted if room is None else min(wanted, room)
    from_spend = remove_rate(can_spend, rate, round_up=False)
    deliverable = min(target, from_spend)
    partial = bool(tx.flags & protocol.TF_PARTIAL_PAYMENT)
    if deliverable <= 0:
        return "tecPATH_DRY"
    if deliverable < wanted and not partial:
        return "tecPATH_PARTIAL"
    delivered = min(wanted, deliverable)
    deliver_min = safe_amount(tx, "DeliverMin")
    if isinstance(deliver_min, IssuedAmount) and delivered < deliver_min.value:
        return "tecPATH_PARTIAL"
    if through_issuer:
        # rippled's reverse pass asks the sender for the target grossed up, rounded up
        # (never less than the issuer pays out); when that is more than the sender can
        # put in, its forward pass spends all of that, and the receiver's side is
        # rounded down.
        spends_all = from_spend < target
        cost = can_spend if spends_all else apply_rate(delivered, rate, round_up=True)
        trustlines.ripple_credit(view, source, issuer, currency, cost)
        trustlines.ripple_credit(view, issuer, destination, currency, delivered)
    else:
        trustlines.ripple_credit(view, source, destination, currency, delivered)
    tx.delivered = amount.with_value(delivered)
    return TES


def _source_limit(view: ApplyView, source: str, issuer: str, currency: str) -> Decimal:
    """What the sender can put in: its holding, or (the issuer) as much as it likes."""
    if source == issuer:
        return Decimal(protocol.TOTAL_SUPPLY_DROPS) ** 2  # no bound of its own
    return _holding(view, source, issuer, currency)


def _path_blocked(
    view: ApplyView, source: str, destination: str, issuer: str, currency: str
) -> bool:
    """True if a step of the default path fails rippled's step checks.

    Steps: source -> destination when one of them is the issuer, else source -> issuer
    -> destination. Each needs its line; a step that is not the whole payment is
    subject to freezes; an issuer with RequireAuth cannot issue over a line it has not
    authorised (while that line holds nothing); the issuer may not ripple between two
    lines on which it has NoRipple.
    """
    if issuer in (source, destination):
        steps = [(source, destination)]
    else:
        steps = [(source, issuer), (issuer, destination)]
    lines = []
    for src, dst in steps:
        line = trustlines.read_line(view, src, dst, currency)
        if line is None or not _exists(view, dst):
            return True
        if len(steps) > 1 and trustlines.freeze_blocks_step(view, src, dst, currency):
            return True
        if _needs_auth(view, line, src):
            return True
        lines.append(line)
    return len(lines) == 2 and trustlines.no_ripple_blocks(lines[0], lines[1], issuer)


def _needs_auth(view: ApplyView, line: dict[str, object], src: str) -> bool:
    src_root = read_account(view, src)
    if src_root is None or not has_flag(src_root, protocol.LSF_REQUIRE_AUTH):
        return False
    return not trustlines.is_authorized(line, src) and trustlines.balance_of(line, src) == 0


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
