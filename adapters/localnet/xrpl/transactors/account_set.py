"""AccountSet: account flags (rippled's ``SetAccount.cpp``), for the flags built here.

Built: RequireDest (and tfRequireDestTag/tfOptionalDestTag), DefaultRipple,
AllowTrustLineLocking (TokenEscrow), DisallowXRP (advisory in rippled too), and the
Domain field. Flags whose rules this node does not enforce (RequireAuth, DisableMaster,
freezes, DepositAuth, ...) and TransferRate/TickSize get ``temDISABLED``, so a client
never believes a protection is in force when it is not.
"""

from __future__ import annotations

from adapters.localnet.xrpl import protocol
from adapters.localnet.xrpl.accounts import read_account, write_account
from adapters.localnet.xrpl.state import ApplyView
from adapters.localnet.xrpl.transactors.base import TES, ApplyContext, Transactor, Tx

_FLAG_BITS = {
    protocol.ASF_REQUIRE_DEST: protocol.LSF_REQUIRE_DEST_TAG,
    protocol.ASF_DISALLOW_XRP: protocol.LSF_DISALLOW_XRP,
    protocol.ASF_DEFAULT_RIPPLE: protocol.LSF_DEFAULT_RIPPLE,
    protocol.ASF_ALLOW_TRUST_LINE_LOCKING: protocol.LSF_ALLOW_TRUST_LINE_LOCKING,
}
_UNENFORCED_ASF = frozenset(range(1, 18)) - set(_FLAG_BITS)
_UNSUPPORTED_TF = protocol.TF_REQUIRE_AUTH | protocol.TF_OPTIONAL_AUTH


class AccountSet(Transactor):
    allowed_flags = protocol.ACCOUNT_SET_TF

    def preflight(self, tx: Tx) -> str:
        set_flag = tx.get("SetFlag")
        clear_flag = tx.get("ClearFlag")
        if set_flag is not None and set_flag == clear_flag:
            return "temINVALID_FLAG"
        flags = tx.flags
        if flags & protocol.TF_REQUIRE_DEST_TAG and flags & protocol.TF_OPTIONAL_DEST_TAG:
            return "temINVALID_FLAG"
        if flags & protocol.TF_DISALLOW_XRP and flags & protocol.TF_ALLOW_XRP:
            return "temINVALID_FLAG"
        if set_flag == protocol.ASF_REQUIRE_DEST and flags & protocol.TF_OPTIONAL_DEST_TAG:
            return "temINVALID_FLAG"
        if flags & _UNSUPPORTED_TF or set_flag in _UNENFORCED_ASF or clear_flag in _UNENFORCED_ASF:
            return "temDISABLED"
        if any(field in tx for field in ("TransferRate", "TickSize", "NFTokenMinter")):
            return "temDISABLED"
        if "Domain" in tx and len(str(tx["Domain"])) > 512:
            return "telBAD_DOMAIN"
        return TES

    def do_apply(self, tx: Tx, view: ApplyView, actx: ApplyContext) -> str:
        account = read_account(view, tx.account)
        assert account is not None
        flags = int(account.get("Flags", 0))
        set_flag = tx.get("SetFlag")
        clear_flag = tx.get("ClearFlag")
        if set_flag in _FLAG_BITS:
            flags |= _FLAG_BITS[set_flag]
        if clear_flag in _FLAG_BITS:
            flags &= ~_FLAG_BITS[clear_flag]
        if tx.flags & protocol.TF_REQUIRE_DEST_TAG:
            flags |= protocol.LSF_REQUIRE_DEST_TAG
        if tx.flags & protocol.TF_OPTIONAL_DEST_TAG:
            flags &= ~protocol.LSF_REQUIRE_DEST_TAG
        if tx.flags & protocol.TF_DISALLOW_XRP:
            flags |= protocol.LSF_DISALLOW_XRP
        if tx.flags & protocol.TF_ALLOW_XRP:
            flags &= ~protocol.LSF_DISALLOW_XRP
        account["Flags"] = flags
        if "Domain" in tx:
            if tx["Domain"]:
                account["Domain"] = tx["Domain"]
            else:
                account.pop("Domain", None)
        write_account(view, account)
        return TES
