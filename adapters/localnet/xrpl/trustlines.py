"""Trust lines (RippleState objects): balances, limits, reserves, creation and deletion.

A line joins a "low" and a "high" account (ordered by AccountID). ``Balance`` is kept
from the low side's view: positive means the low account holds tokens issued by the
high account. Each side owes an owner reserve while its side is not in the default
state (a non-zero limit, a positive balance, a NoRipple flag that differs from its
account's DefaultRipple, or a freeze). A line with both sides default and a zero
balance is deleted. These rules follow rippled's ``SetTrust.cpp`` and ``View.cpp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from adapters.localnet.xrpl import amounts, hashing, protocol
from adapters.localnet.xrpl.accounts import (
    adjust_owner_count,
    has_flag,
    read_account,
    write_account,
)
from adapters.localnet.xrpl.state import ApplyView, JsonObject, dir_insert, dir_remove


@dataclass(frozen=True)
class Side:
    """The flag bits and field names of one side of a line."""

    limit_field: str
    node_field: str
    reserve: int
    no_ripple: int
    freeze: int
    auth: int
    deep_freeze: int


LOW = Side(
    "LowLimit",
    "LowNode",
    protocol.LSF_LOW_RESERVE,
    protocol.LSF_LOW_NO_RIPPLE,
    protocol.LSF_LOW_FREEZE,
    protocol.LSF_LOW_AUTH,
    protocol.LSF_LOW_DEEP_FREEZE,
)
HIGH = Side(
    "HighLimit",
    "HighNode",
    protocol.LSF_HIGH_RESERVE,
    protocol.LSF_HIGH_NO_RIPPLE,
    protocol.LSF_HIGH_FREEZE,
    protocol.LSF_HIGH_AUTH,
    protocol.LSF_HIGH_DEEP_FREEZE,
)
_ANY_DEEP_FREEZE = protocol.LSF_LOW_DEEP_FREEZE | protocol.LSF_HIGH_DEEP_FREEZE


def side_of(line: JsonObject, account: str) -> Side:
    if line["LowLimit"]["issuer"] == account:
        return LOW
    assert line["HighLimit"]["issuer"] == account, "account is not on this line"
    return HIGH


def read_line(view: ApplyView, a: str, b: str, currency: str) -> JsonObject | None:
    return view.read(hashing.trust_line_index(a, b, currency))


def balance_of(line: JsonObject, account: str) -> Decimal:
    """What ``account`` holds on this line (negative: what it owes the other side)."""
    low_view = amounts.parse_value(line["Balance"]["value"])
    return low_view if side_of(line, account) is LOW else -low_view


def limit_of(line: JsonObject, account: str) -> Decimal:
    return amounts.parse_value(line[side_of(line, account).limit_field]["value"])


def _set_balance(line: JsonObject, account: str, holding: Decimal) -> None:
    low_view = holding if side_of(line, account) is LOW else -holding
    line["Balance"]["value"] = amounts.text(amounts.normalize(low_view))


def side_is_default(line: JsonObject, account: str, account_root: JsonObject) -> bool:
    """True if ``account``'s side needs no reserve (rippled's bLowReserveSet negated)."""
    side = side_of(line, account)
    flags = int(line.get("Flags", 0))
    no_ripple = bool(flags & side.no_ripple)
    default_ripple = bool(int(account_root.get("Flags", 0)) & protocol.LSF_DEFAULT_RIPPLE)
    return (
        limit_of(line, account) == 0
        and balance_of(line, account) <= 0
        and no_ripple != default_ripple
        and not flags & side.freeze
    )


def create_line(
    view: ApplyView,
    *,
    owner: str,
    peer: str,
    currency: str,
    owner_limit: Decimal,
    owner_no_ripple: bool,
    owner_flags: int = 0,
) -> JsonObject:
    """Create the line between ``owner`` (who pays its reserve) and ``peer``.

    As rippled's ``trustCreate``: the peer's side gets NoRipple unless the peer's account
    has DefaultRipple set, which is why an issuer must set DefaultRipple before holders
    open lines if they are to pay each other through it.
    """
    owner_root = read_account(view, owner)
    peer_root = read_account(view, peer)
    assert owner_root is not None, "line owner must exist"
    assert peer_root is not None, "line peer must exist"
    index = hashing.trust_line_index(owner, peer, currency)
    owner_low = hashing.is_low_account(owner, peer)
    low, high = (owner, peer) if owner_low else (peer, owner)
    owner_side, peer_side = (LOW, HIGH) if owner_low else (HIGH, LOW)
    # owner_flags: which of the owner's auth/freeze/deep-freeze bits the creating
    # TrustSet asked for (rippled's trustCreate takes them as booleans).
    flags = owner_side.reserve | _own_bits(owner_side, owner_flags)
    if owner_no_ripple:
        flags |= owner_side.no_ripple
    if not int(peer_root.get("Flags", 0)) & protocol.LSF_DEFAULT_RIPPLE:
        flags |= peer_side.no_ripple
    limits = {owner: owner_limit, peer: Decimal(0)}
    line: JsonObject = {
        "LedgerEntryType": "RippleState",
        "Flags": flags,
        "Balance": {"currency": currency, "issuer": protocol.NO_ACCOUNT, "value": "0"},
        "LowLimit": {"currency": currency, "issuer": low, "value": amounts.text(limits[low])},
        "HighLimit": {"currency": currency, "issuer": high, "value": amounts.text(limits[high])},
        "LowNode": dir_insert(view, low, index),
        "HighNode": dir_insert(view, high, index),
    }
    view.write(index, line)
    adjust_owner_count(owner_root, 1)
    write_account(view, owner_root)
    return line


def delete_line(view: ApplyView, line: JsonObject) -> None:
    low = line["LowLimit"]["issuer"]
    high = line["HighLimit"]["issuer"]
    index = hashing.trust_line_index(low, high, line["Balance"]["currency"])
    dir_remove(view, low, index)
    dir_remove(view, high, index)
    view.erase(index)


def ripple_credit(
    view: ApplyView, sender: str, receiver: str, currency: str, value: Decimal
) -> None:
    """Move ``value`` along the existing line from ``sender`` to ``receiver``.

    One of the two is the issuer. When the sender's holding falls to zero and its side
    is otherwise default, its reserve is released, and a line left with nothing on
    either side is deleted (rippled's ``rippleCreditIOU``).
    """
    assert value > 0, "credit must be positive"
    index = hashing.trust_line_index(sender, receiver, currency)
    line = view.read(index)
    assert line is not None, "ripple_credit needs an existing line"
    before = balance_of(line, sender)
    after = amounts.subtract(before, value)
    _set_balance(line, sender, after)
    side = side_of(line, sender)
    flags = int(line.get("Flags", 0))
    sender_root = read_account(view, sender)
    assert sender_root is not None
    if before > 0 >= after and flags & side.reserve and side_is_default(line, sender, sender_root):
        adjust_owner_count(sender_root, -1)
        write_account(view, sender_root)
        flags &= ~side.reserve
        line["Flags"] = flags
        other = HIGH if side is LOW else LOW
        if after == 0 and not flags & other.reserve:
            delete_line(view, line)
            return
    view.write(index, line)


def no_ripple_blocks(line_in: JsonObject, line_out: JsonObject, through: str) -> bool:
    """True if ``through`` has NoRipple on both lines, which forbids rippling through it."""
    flags_in = int(line_in.get("Flags", 0))
    flags_out = int(line_out.get("Flags", 0))
    return bool(
        flags_in & side_of(line_in, through).no_ripple
        and flags_out & side_of(line_out, through).no_ripple
    )


# --- issuer controls (rippled View.cpp: isGlobalFrozen, isFrozen, isDeepFrozen,
# requireAuth; StepChecks.h: checkFreeze) ---------------------------------------------

OWNER_AUTH = 1
OWNER_FREEZE = 2
OWNER_DEEP_FREEZE = 4


def _own_bits(side: Side, owner_flags: int) -> int:
    bits = 0
    if owner_flags & OWNER_AUTH:
        bits |= side.auth
    if owner_flags & OWNER_FREEZE:
        bits |= side.freeze
    if owner_flags & OWNER_DEEP_FREEZE:
        bits |= side.deep_freeze
    return bits


def is_global_frozen(view: ApplyView, issuer: str) -> bool:
    root = read_account(view, issuer)
    return root is not None and has_flag(root, protocol.LSF_GLOBAL_FREEZE)


def is_frozen(view: ApplyView, holder: str, issuer: str, currency: str) -> bool:
    """True if ``issuer`` froze ``holder``'s line, one by one or all at once."""
    if is_global_frozen(view, issuer):
        return True
    if holder == issuer:
        return False
    line = read_line(view, holder, issuer, currency)
    return line is not None and bool(int(line.get("Flags", 0)) & side_of(line, issuer).freeze)


def is_deep_frozen(view: ApplyView, holder: str, issuer: str, currency: str) -> bool:
    """A deep freeze blocks the line whichever side set it (rippled's isDeepFrozen)."""
    if holder == issuer:
        return False
    line = read_line(view, holder, issuer, currency)
    return line is not None and bool(int(line.get("Flags", 0)) & _ANY_DEEP_FREEZE)


def is_authorized(line: JsonObject, issuer: str) -> bool:
    """True if ``issuer`` has authorised the other side of ``line`` (lsfLowAuth/HighAuth)."""
    return bool(int(line.get("Flags", 0)) & side_of(line, issuer).auth)


def require_auth(view: ApplyView, holder: str, issuer: str, currency: str) -> str:
    """rippled's requireAuth for an IOU: tecNO_AUTH / tecNO_LINE, or tesSUCCESS."""
    if holder == issuer:
        return "tesSUCCESS"
    root = read_account(view, issuer)
    if root is None or not has_flag(root, protocol.LSF_REQUIRE_AUTH):
        return "tesSUCCESS"
    line = read_line(view, holder, issuer, currency)
    if line is None:
        return "tecNO_LINE"
    return "tesSUCCESS" if is_authorized(line, issuer) else "tecNO_AUTH"


def freeze_blocks_step(view: ApplyView, src: str, dst: str, currency: str) -> bool:
    """rippled's checkFreeze for one rippling step ``src`` -> ``dst``.

    Blocked when ``dst`` has frozen all its tokens (GlobalFreeze), when ``dst`` froze
    this line on its side, or when either side deep-froze it. A payment that is one
    single issue or redeem step is never checked, which is why an issuer can still pay
    and be paid by a frozen holder.
    """
    if is_global_frozen(view, dst):
        return True
    line = read_line(view, src, dst, currency)
    if line is None:
        return False
    flags = int(line.get("Flags", 0))
    return bool(flags & side_of(line, dst).freeze or flags & _ANY_DEEP_FREEZE)


def control_fields(line: JsonObject, account: str) -> dict[str, bool]:
    """account_lines' issuer-control flags, from ``account``'s point of view.

    As rippled's ``account_lines``: ``authorized``/``freeze``/``deep_freeze`` are bits
    ``account`` set on its side, the ``_peer`` forms the other side's; only true ones
    are listed.
    """
    side = side_of(line, account)
    other = HIGH if side is LOW else LOW
    flags = int(line.get("Flags", 0))
    candidates = {
        "authorized": side.auth,
        "peer_authorized": other.auth,
        "freeze": side.freeze,
        "freeze_peer": other.freeze,
        "deep_freeze": side.deep_freeze,
        "deep_freeze_peer": other.deep_freeze,
    }
    return {name: True for name, bit in candidates.items() if flags & bit}
