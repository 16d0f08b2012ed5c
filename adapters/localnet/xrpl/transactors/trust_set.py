"""TrustSet: create, modify or remove a trust line (rippled's ``SetTrust.cpp``).

Built: the limit, NoRipple, tfSetfAuth (an issuer with RequireAuth authorises the
holder's line), tfSetFreeze/tfClearFreeze (the issuer freezes its side of the line, so
the holder can only send back to the issuer) and, with the DeepFreeze amendment,
tfSetDeepFreeze/tfClearDeepFreeze (the holder can neither send nor receive). NoFreeze
issuers cannot freeze; a deep freeze needs a freeze. QualityIn/QualityOut are not built
and get ``temDISABLED`` rather than a silent approximation.
"""

from __future__ import annotations

from decimal import Decimal

from adapters.localnet.xrpl import amendments, amounts, hashing, protocol, trustlines
from adapters.localnet.xrpl.accounts import (
    adjust_owner_count,
    has_flag,
    read_account,
    write_account,
)
from adapters.localnet.xrpl.amounts import IssuedAmount, is_bad_currency
from adapters.localnet.xrpl.state import ApplyView, JsonObject
from adapters.localnet.xrpl.transactors.base import (
    TES,
    ApplyContext,
    LedgerContext,
    Transactor,
    Tx,
    safe_amount,
)

_DEEP_FREEZE_FLAGS = protocol.TF_SET_DEEP_FREEZE | protocol.TF_CLEAR_DEEP_FREEZE
_SETS_A_FREEZE = protocol.TF_SET_FREEZE | protocol.TF_SET_DEEP_FREEZE
_CLEARS_A_FREEZE = protocol.TF_CLEAR_FREEZE | protocol.TF_CLEAR_DEEP_FREEZE


def _freeze_flags(flags: int, side: trustlines.Side, tx_flags: int, no_freeze: bool) -> int:
    """The line's flags after the freeze bits of ``tx_flags`` (computeFreezeFlags).

    Setting and clearing the same freeze in one transaction changes nothing, and an
    account with NoFreeze cannot set either freeze.
    """
    set_freeze = bool(tx_flags & protocol.TF_SET_FREEZE)
    clear_freeze = bool(tx_flags & protocol.TF_CLEAR_FREEZE)
    set_deep = bool(tx_flags & protocol.TF_SET_DEEP_FREEZE)
    clear_deep = bool(tx_flags & protocol.TF_CLEAR_DEEP_FREEZE)
    if set_freeze and not clear_freeze and not no_freeze:
        flags |= side.freeze
    elif clear_freeze and not set_freeze:
        flags &= ~side.freeze
    if set_deep and not clear_deep and not no_freeze:
        flags |= side.deep_freeze
    elif clear_deep and not set_deep:
        flags &= ~side.deep_freeze
    return flags


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
        if "QualityIn" in tx or "QualityOut" in tx:
            return "temDISABLED"
        return TES

    def preclaim(self, tx: Tx, view: ApplyView, ctx: LedgerContext) -> str:
        # rippled refuses these bits in preflight while DeepFreeze is off; the
        # amendment set is known here, with the same answer.
        if tx.flags & _DEEP_FREEZE_FLAGS and amendments.DEEP_FREEZE not in ctx.amendments:
            return "temINVALID_FLAG"
        limit = tx.amount("LimitAmount")
        assert isinstance(limit, IssuedAmount)
        root = read_account(view, tx.account)
        assert root is not None
        if tx.flags & protocol.TF_SETF_AUTH and not has_flag(root, protocol.LSF_REQUIRE_AUTH):
            return "tefNO_AUTH_REQUIRED"
        if read_account(view, limit.issuer) is None:
            return "tecNO_DST"
        if amendments.DEEP_FREEZE in ctx.amendments:
            return _freeze_preclaim(tx, view, root, limit)
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
            set_auth = bool(tx.flags & protocol.TF_SETF_AUTH)
            if limit.value == 0 and not set_no_ripple and not set_auth:
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
                owner_flags=_new_line_flags(tx.flags),
            )
            return TES
        side = trustlines.side_of(line, account)
        flags = _freeze_flags(
            int(line.get("Flags", 0)), side, tx.flags, has_flag(root, protocol.LSF_NO_FREEZE)
        )
        if tx.flags & protocol.TF_SETF_AUTH:
            flags |= side.auth
        line["Flags"] = flags
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


def _new_line_flags(tx_flags: int) -> int:
    """Auth and freeze bits a TrustSet that creates a line gives the creator's side."""
    owner_flags = 0
    if tx_flags & protocol.TF_SETF_AUTH:
        owner_flags |= trustlines.OWNER_AUTH
    if tx_flags & protocol.TF_SET_FREEZE and not tx_flags & protocol.TF_CLEAR_FREEZE:
        owner_flags |= trustlines.OWNER_FREEZE
    if tx_flags & protocol.TF_SET_DEEP_FREEZE:
        owner_flags |= trustlines.OWNER_DEEP_FREEZE
    return owner_flags


def _freeze_preclaim(tx: Tx, view: ApplyView, root: JsonObject, limit: IssuedAmount) -> str:
    """The freeze invariants rippled checks when DeepFreeze is enabled."""
    if tx.flags & _SETS_A_FREEZE and has_flag(root, protocol.LSF_NO_FREEZE):
        return "tecNO_PERMISSION"
    if tx.flags & _SETS_A_FREEZE and tx.flags & _CLEARS_A_FREEZE:
        return "tecNO_PERMISSION"
    line = trustlines.read_line(view, tx.account, limit.issuer, limit.currency)
    if line is None:
        # A new line: this account would be its low side if its id sorts first.
        side = (
            trustlines.LOW if hashing.is_low_account(tx.account, limit.issuer) else trustlines.HIGH
        )
        flags = 0
    else:
        side = trustlines.side_of(line, tx.account)
        flags = int(line.get("Flags", 0))
    flags = _freeze_flags(flags, side, tx.flags, no_freeze=False)
    # A deep freeze rests on a freeze: neither set it alone nor lift the freeze under it.
    if flags & side.deep_freeze and not flags & side.freeze:
        return "tecNO_PERMISSION"
    return TES


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
