"""AccountSet: account flags and settings (rippled's ``SetAccount.cpp``), those built here.

Built: RequireDest (and tfRequireDestTag/tfOptionalDestTag), RequireAuth (and
tfRequireAuth/tfOptionalAuth; only while the owner directory is empty), DisallowXRP
(advisory in rippled too), DefaultRipple, NoFreeze (cannot be cleared), GlobalFreeze
(cannot be cleared once NoFreeze is set), DepositAuth, AllowTrustLineLocking
(TokenEscrow), TransferRate, and the Domain, EmailHash, MessageKey, WalletLocator and
TickSize fields (stored as rippled stores them; TickSize matters only to offers, which
this node does not build). Flags whose rules this node does not enforce (DisableMaster,
AccountTxnID, clawback, DisallowIncoming..., NFTokenMinter) get ``temDISABLED``, so a
client never believes a protection is in force when it is not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.localnet.xrpl import protocol
from adapters.localnet.xrpl.accounts import has_flag, read_account, write_account
from adapters.localnet.xrpl.state import ApplyView, JsonObject, owned_objects
from adapters.localnet.xrpl.transactors.base import (
    TES,
    ApplyContext,
    LedgerContext,
    Transactor,
    Tx,
)

# asf values whose flag is simply set or cleared.
_FLAG_BITS = {
    protocol.ASF_REQUIRE_DEST: protocol.LSF_REQUIRE_DEST_TAG,
    protocol.ASF_REQUIRE_AUTH: protocol.LSF_REQUIRE_AUTH,
    protocol.ASF_DISALLOW_XRP: protocol.LSF_DISALLOW_XRP,
    protocol.ASF_DEFAULT_RIPPLE: protocol.LSF_DEFAULT_RIPPLE,
    protocol.ASF_DEPOSIT_AUTH: protocol.LSF_DEPOSIT_AUTH,
    protocol.ASF_ALLOW_TRUST_LINE_LOCKING: protocol.LSF_ALLOW_TRUST_LINE_LOCKING,
}
# asf values with their own rules (see _freeze_flags).
_FREEZE_ASF = frozenset({protocol.ASF_NO_FREEZE, protocol.ASF_GLOBAL_FREEZE})
_UNENFORCED_ASF = frozenset(range(1, 18)) - set(_FLAG_BITS) - _FREEZE_ASF
# Legacy tf pairs and the asf value each member of the pair stands for.
_TF_PAIRS = (
    (protocol.TF_REQUIRE_DEST_TAG, protocol.TF_OPTIONAL_DEST_TAG, protocol.ASF_REQUIRE_DEST),
    (protocol.TF_REQUIRE_AUTH, protocol.TF_OPTIONAL_AUTH, protocol.ASF_REQUIRE_AUTH),
    (protocol.TF_DISALLOW_XRP, protocol.TF_ALLOW_XRP, protocol.ASF_DISALLOW_XRP),
)


def _sets(tx: Tx, tf_set: int, asf: int) -> bool:
    return bool(tx.flags & tf_set) or tx.get("SetFlag") == asf


def _clears(tx: Tx, tf_clear: int, asf: int) -> bool:
    return bool(tx.flags & tf_clear) or tx.get("ClearFlag") == asf


class AccountSet(Transactor):
    allowed_flags = protocol.ACCOUNT_SET_TF

    def preflight(self, tx: Tx) -> str:
        set_flag = tx.get("SetFlag")
        clear_flag = tx.get("ClearFlag")
        for field in (set_flag, clear_flag):
            if field is not None and not isinstance(field, int):
                return "temMALFORMED"
        if set_flag is not None and set_flag != 0 and set_flag == clear_flag:
            return "temINVALID_FLAG"
        for tf_set, tf_clear, asf in _TF_PAIRS:
            if _sets(tx, tf_set, asf) and _clears(tx, tf_clear, asf):
                return "temINVALID_FLAG"
        if set_flag in _UNENFORCED_ASF or clear_flag in _UNENFORCED_ASF:
            return "temDISABLED"
        if "NFTokenMinter" in tx:
            return "temDISABLED"
        result = _check_fields(tx)
        if result != TES:
            return result
        if "TransferRate" in tx:
            rate = tx["TransferRate"]
            # 0 clears the rate; otherwise 1.0 .. 2.0 in billionths (QUALITY_ONE).
            if not isinstance(rate, int) or rate < 0:
                return "temMALFORMED"
            if (rate and rate < protocol.TRANSFER_RATE_PARITY) or rate > protocol.TRANSFER_RATE_MAX:
                return "temBAD_TRANSFER_RATE"
        if "Domain" in tx and len(str(tx["Domain"])) > 512:
            return "telBAD_DOMAIN"
        return TES

    def preclaim(self, tx: Tx, view: ApplyView, ctx: LedgerContext) -> str:
        account = read_account(view, tx.account)
        assert account is not None
        wants_auth = _sets(tx, protocol.TF_REQUIRE_AUTH, protocol.ASF_REQUIRE_AUTH)
        newly_required = wants_auth and not has_flag(account, protocol.LSF_REQUIRE_AUTH)
        # RequireAuth cannot reach lines (or anything else) that already exist.
        if newly_required and owned_objects(view, tx.account):
            return "tecOWNERS"
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
        for tf_set, tf_clear, asf in _TF_PAIRS:
            if tx.flags & tf_set:
                flags |= _FLAG_BITS[asf]
            if tx.flags & tf_clear:
                flags &= ~_FLAG_BITS[asf]
        # rippled refuses asfNoFreeze unless signed with the master key
        # (tecNEED_MASTER_KEY). Here the master key is the only way to sign: no
        # transactor sets a RegularKey and multisigning is refused (apply.py's
        # _check_signing_key); building RegularKey means adding that rule here.
        account["Flags"] = _freeze_flags(flags, set_flag, clear_flag)
        _apply_fields(tx, account)
        write_account(view, account)
        return TES


def _freeze_flags(flags: int, set_flag: object, clear_flag: object) -> int:
    """NoFreeze is permanent, and once it is set GlobalFreeze cannot be lifted either,
    so an issuer that promised never to freeze cannot use a global freeze tactically."""
    if set_flag == protocol.ASF_NO_FREEZE:
        flags |= protocol.LSF_NO_FREEZE
    if set_flag == protocol.ASF_GLOBAL_FREEZE:
        flags |= protocol.LSF_GLOBAL_FREEZE
    if (
        set_flag != protocol.ASF_GLOBAL_FREEZE
        and clear_flag == protocol.ASF_GLOBAL_FREEZE
        and not flags & protocol.LSF_NO_FREEZE
    ):
        flags &= ~protocol.LSF_GLOBAL_FREEZE
    return flags


# Public keys rippled accepts (publicKeyType): compressed secp256k1 or ed25519, 33 bytes.
_KEY_PREFIXES = (b"\x02", b"\x03", b"\xed")


def _is_zero_hash(value: object) -> bool:
    return int(str(value), 16) == 0


# The settings AccountSet writes, and the values that remove the field instead
# (SetAccount::doApply): an empty Domain or MessageKey, an all-zero hash, a TransferRate
# of 0 or parity, a TickSize of 0 or the maximum.
_SETTINGS: dict[str, Callable[[Any], bool]] = {
    "Domain": lambda value: not value,
    "EmailHash": _is_zero_hash,
    "WalletLocator": _is_zero_hash,
    "MessageKey": lambda value: not value,
    "TransferRate": lambda value: int(value) in (0, protocol.TRANSFER_RATE_PARITY),
    "TickSize": lambda value: int(value) in (0, protocol.MAX_TICK_SIZE),
}


def _check_fields(tx: Tx) -> str:
    """SetAccount::preflight's checks of the settings fields."""
    tick_size = tx.get("TickSize")
    if tick_size is not None and not isinstance(tick_size, int):
        return "temMALFORMED"
    if tick_size and not protocol.MIN_TICK_SIZE <= tick_size <= protocol.MAX_TICK_SIZE:
        return "temBAD_TICK_SIZE"
    message_key = tx.get("MessageKey")
    if message_key:
        try:
            key = bytes.fromhex(str(message_key))
        except ValueError:
            return "temMALFORMED"
        if len(key) != 33 or not key.startswith(_KEY_PREFIXES):
            return "telBAD_PUBLIC_KEY"
    return TES


def _apply_fields(tx: Tx, account: JsonObject) -> None:
    for field, removes in _SETTINGS.items():
        if field in tx:
            if removes(tx[field]):
                account.pop(field, None)
            else:
                account[field] = tx[field]
