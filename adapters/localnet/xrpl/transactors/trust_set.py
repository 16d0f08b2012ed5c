"""TrustSet: create, modify or remove a trust line (rippled's ``SetTrust.cpp``).

Freeze, deep-freeze and authorization flags and QualityIn/QualityOut are not built here
(the settlement engine never sets them); a transaction using them gets ``temDISABLED``
rather than a silent approximation.
"""

from __future__ import annotations

from decimal import Decimal

from adapters.localnet.xrpl import amounts, hashing, protocol, trustlines
from adapters.localnet.xrpl.accounts import adjust_owner_count, read_account, write_account
from adapters.localnet.xrpl.amounts import IssuedAmount, is_bad_currency
from adapters.localnet.xrpl.state import ApplyView
from adapters.localnet.xrpl.transactors.base import (
    TES,
    ApplyContext,
    LedgerContext,
    Transactor,
    Tx,
    safe_amount,
)

_UNSUPPORTED_FLAGS = (
    protocol.TF_SETF_AUTH
    | protocol.TF_SET_FREEZE
    | protocol.TF_CLEAR_FREEZE
    | protocol.TF_SET_DEEP_FREEZE
    | protocol.TF_CLEAR_DEEP_FREEZE
)


class TrustSet(Transactor):
    allowed_flags = protocol.TRUST_SET_TF

    def preflight(self, tx: Tx) -> str:
        limit = safe_amount(tx, "LimitAmount")
        if not isinstance(limit, IssuedAmount):
            return "temBAD_LIMIT"
        if is_bad_currency(limit.currency):
            return "temBAD_CURRENCY"
        if limit.value < 0:
            return "temBAD_LIMIT"
        if limit.issuer == tx.account:
            return "temDST_IS_SRC"
        if tx.flags & _UNSUPPORTED_FLAGS or "QualityIn" in tx or "QualityOut" in tx:
            return "temDISABLED"
        return TES

    def preclaim(self, tx: Tx, view: ApplyView, ctx: LedgerContext) -> str:
        limit = tx.amount("LimitAmount")
        assert isinstance(limit, IssuedAmount)
        if read_account(view, limit.issuer) is None:
            return "tecNO_DST"
        return TES

    def do_apply(self, tx: Tx, view: ApplyView, actx: ApplyContext) -> str:
        limit = tx.amount("LimitAmount")
        assert isinstance(limit, IssuedAmount)
        account = tx.account
        peer = limit.issuer
        root = read_account(view, account)
        assert root is not None
        owner_count = int(root.get("OwnerCount", 0))
        # rippled lets an account with fewer than two owned objects open a line without
        # meeting the reserve, so a fresh account can always get its first lines.
        reserve_create = 0 if owner_count < 2 else actx.ctx.fees.account_reserve(owner_count + 1)
        set_no_ripple = bool(tx.flags & protocol.TF_SET_NO_RIPPLE)
        clear_no_ripple = bool(tx.flags & protocol.TF_CLEAR_NO_RIPPLE)
        line = trustlines.read_line(view, account, peer, limit.currency)
        if line is None:
            if limit.value == 0 and not set_no_ripple:
                return "tecNO_LINE_REDUNDANT"
            if actx.prior_balance_drops < reserve_create:
                return "tecNO_LINE_INSUF_RESERVE"
            trustlines.create_line(
                view,
                owner=account,
                peer=peer,
                currency=limit.currency,
                owner_limit=limit.value,
                owner_no_ripple=set_no_ripple and not clear_no_ripple,
            )
            return TES
        return _modify(
            view,
            line,
            account=account,
            peer=peer,
            limit=limit.value,
            set_no_ripple=set_no_ripple,
            clear_no_ripple=clear_no_ripple,
            reserve_create=reserve_create,
            prior_balance_drops=actx.prior_balance_drops,
        )


def _modify(
    view: ApplyView,
    line: dict[str, object],
    *,
    account: str,
    peer: str,
    limit: Decimal,
    set_no_ripple: bool,
    clear_no_ripple: bool,
    reserve_create: int,
    prior_balance_drops: int,
) -> str:
    side = trustlines.side_of(line, account)
    limit_json = line[side.limit_field]
    assert isinstance(limit_json, dict)
    limit_json["value"] = amounts.text(limit)
    flags = int(str(line.get("Flags", 0)))
    if set_no_ripple and not clear_no_ripple:
        if trustlines.balance_of(line, account) < 0:
            # fix1578: NoRipple cannot be set on a side that owes.
            return "tecNO_PERMISSION"
        flags |= side.no_ripple
    elif clear_no_ripple and not set_no_ripple:
        flags &= ~side.no_ripple
    line["Flags"] = flags
    reserve_increase = False
    for party in (account, peer):
        party_side = trustlines.side_of(line, party)
        party_root = read_account(view, party)
        assert party_root is not None
        wants_reserve = not trustlines.side_is_default(line, party, party_root)
        has_reserve = bool(flags & party_side.reserve)
        if wants_reserve and not has_reserve:
            adjust_owner_count(party_root, 1)
            flags |= party_side.reserve
            reserve_increase = reserve_increase or party == account
        elif has_reserve and not wants_reserve:
            adjust_owner_count(party_root, -1)
            flags &= ~party_side.reserve
        write_account(view, party_root)
    line["Flags"] = flags
    index = hashing.trust_line_index(account, peer, str(limit_json["currency"]))
    both_default = not flags & (trustlines.LOW.reserve | trustlines.HIGH.reserve)
    if both_default:
        trustlines.delete_line(view, line)
        return TES
    if reserve_increase and prior_balance_drops < reserve_create:
        return "tecINSUF_RESERVE_LINE"
    view.write(index, line)
    return TES
