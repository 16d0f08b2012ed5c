"""DepositPreauth: let one account deliver funds to a DepositAuth account.

Follows rippled's ``DepositPreauth.cpp`` for account preauthorisation: exactly one of
``Authorize`` / ``Unauthorize``; an account cannot preauthorise itself; the object is
keyed by (owner, authorised account), sits in the owner's directory and counts toward
its owner reserve. Credential preauthorisation (``AuthorizeCredentials``) belongs to the
Credentials amendment, which this node does not implement: ``temDISABLED``.
"""

from __future__ import annotations

from adapters.localnet.xrpl import hashing
from adapters.localnet.xrpl.accounts import adjust_owner_count, read_account, write_account
from adapters.localnet.xrpl.state import ApplyView, JsonObject, dir_insert, dir_remove
from adapters.localnet.xrpl.transactors.base import (
    TES,
    ApplyContext,
    LedgerContext,
    Transactor,
    Tx,
)

_NO_ACCOUNT_ID = bytes(20)


def _target(tx: Tx) -> str:
    return str(tx["Authorize"] if "Authorize" in tx else tx["Unauthorize"])


class DepositPreauth(Transactor):
    def preflight(self, tx: Tx) -> str:
        if "AuthorizeCredentials" in tx or "UnauthorizeCredentials" in tx:
            return "temDISABLED"
        if ("Authorize" in tx) == ("Unauthorize" in tx):
            return "temMALFORMED"
        target = tx.get("Authorize", tx.get("Unauthorize"))
        try:
            valid = isinstance(target, str) and hashing.account_id(target) != _NO_ACCOUNT_ID
        except ValueError:
            valid = False
        if not valid:
            return "temINVALID_ACCOUNT_ID"
        if "Authorize" in tx and target == tx.account:
            return "temCANNOT_PREAUTH_SELF"
        return TES

    def preclaim(self, tx: Tx, view: ApplyView, ctx: LedgerContext) -> str:
        target = _target(tx)
        index = hashing.deposit_preauth_index(tx.account, target)
        if "Authorize" in tx:
            if read_account(view, target) is None:
                return "tecNO_TARGET"
            if view.exists(index):
                return "tecDUPLICATE"
        elif not view.exists(index):
            return "tecNO_ENTRY"
        return TES

    def do_apply(self, tx: Tx, view: ApplyView, actx: ApplyContext) -> str:
        owner = read_account(view, tx.account)
        assert owner is not None
        index = hashing.deposit_preauth_index(tx.account, _target(tx))
        if "Unauthorize" in tx:
            dir_remove(view, tx.account, index)
            view.erase(index)
            adjust_owner_count(owner, -1)
            write_account(view, owner)
            return TES
        # The balance before the fee is compared, so the fee may dip into the reserve.
        reserve = actx.ctx.fees.account_reserve(int(owner.get("OwnerCount", 0)) + 1)
        if actx.prior_balance_drops < reserve:
            return "tecINSUFFICIENT_RESERVE"
        preauth: JsonObject = {
            "LedgerEntryType": "DepositPreauth",
            "Account": tx.account,
            "Authorize": _target(tx),
            "Flags": 0,
            "OwnerNode": dir_insert(view, tx.account, index),
        }
        view.write(index, preauth)
        adjust_owner_count(owner, 1)
        write_account(view, owner)
        return TES
