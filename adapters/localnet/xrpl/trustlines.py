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
from adapters.localnet.xrpl.accounts import adjust_owner_count, read_account, write_account
from adapters.localnet.xrpl.state import ApplyView, JsonObject, dir_insert, dir_remove


@dataclass(frozen=True)
class Side:
    """The flag bits and field names of one side of a line."""

    limit_field: str
    node_field: str
    reserve: int
    no_ripple: int
    freeze: int


LOW = Side(
    "LowLimit",
    "LowNode",
    protocol.LSF_LOW_RESERVE,
    protocol.LSF_LOW_NO_RIPPLE,
    protocol.LSF_LOW_FREEZE,
)
HIGH = Side(
    "HighLimit",
    "HighNode",
    protocol.LSF_HIGH_RESERVE,
    protocol.LSF_HIGH_NO_RIPPLE,
    protocol.LSF_HIGH_FREEZE,
)


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
    flags = owner_side.reserve
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
