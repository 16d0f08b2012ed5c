"""The instruction check: the ledger rules by which an XRPL leg's lock or payout would be
refused, judged before anything is signed.

A payout refused after the decision is the costly failure: the other legs may be paid
by then. So every rule that could refuse one is checked when the settlement is
instructed, on the validated ledger, and the leg is refused with a message naming the
account and the rule (``LegInvalid``). The rules, as rippled applies them (``View.cpp``
requireAuth / isFrozen / isDeepFrozen, ``Escrow.cpp``, the payment engine's step checks):

- RequireAuth: an issuer with ``lsfRequireAuth`` lets its token onto a line it has
  authorised only (a token escrow's create and finish: tecNO_AUTH; a payment that
  issues onto the line: tecPATH_DRY);
- freezes: the issuer's GlobalFreeze, a freeze of one line (by the issuer or by the
  holder on its own side) and a deep freeze stop a token escrow's create (tecFROZEN)
  and a payment through the issuer (tecPATH_DRY); a deep freeze also stops a finish;
- the receiver's line and its limit (tecNO_LINE, tecLIMIT_EXCEEDED / tecPATH_PARTIAL);
- a TransferRate: a token escrow pays its receiver the amount less the fee (locked in
  at create time), so a leg whose receiver must get the exact amount cannot be
  escrowed; a custody lock can, the agent paying the fee (checked by the adapter).

The views here are read from ``account_info`` (the issuer) and ``account_lines`` (a
holder's line, from the holder's side); the functions only judge them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from adapters.chain import Leg, LockKind
from adapters.errors import LegInvalid
from adapters.xrpl.amounts import TRANSFER_RATE_PARITY, after_transfer_fee, transfer_rate

LSF_REQUIRE_AUTH: Final = 0x00040000
LSF_GLOBAL_FREEZE: Final = 0x00400000
LSF_ALLOW_TRUST_LINE_LOCKING: Final = 0x40000000

#: how the ledger refuses an unauthorised or frozen line, by the kind of lock
_REFUSED_AT: Final = {
    LockKind.ESCROW: ("tecNO_AUTH", "tecFROZEN", "at EscrowCreate or EscrowFinish"),
    LockKind.CUSTODY: ("tecPATH_DRY", "tecPATH_DRY", "at the custody payments"),
}


@dataclass(frozen=True)
class Issuer:
    """The issuer's account flags and TransferRate, from its AccountRoot."""

    address: str
    flags: int
    transfer_rate: int

    @classmethod
    def of(cls, root: Mapping[str, Any]) -> Issuer:
        return cls(str(root["Account"]), int(root.get("Flags", 0)), transfer_rate(root))

    @property
    def requires_auth(self) -> bool:
        return bool(self.flags & LSF_REQUIRE_AUTH)

    @property
    def frozen_globally(self) -> bool:
        return bool(self.flags & LSF_GLOBAL_FREEZE)

    @property
    def allows_locking(self) -> bool:
        return bool(self.flags & LSF_ALLOW_TRUST_LINE_LOCKING)


@dataclass(frozen=True)
class Line:
    """A holder's trust line to the issuer, from the holder's side (``account_lines``:
    ``authorized``, ``freeze``, ``deep_freeze`` are the holder's bits, ``_peer`` ones
    the issuer's)."""

    holder: str
    balance: Decimal
    limit: Decimal
    authorised: bool
    frozen_by_issuer: bool
    frozen_by_holder: bool
    deep_frozen: bool

    @classmethod
    def of(cls, holder: str, entry: Mapping[str, Any]) -> Line:
        return cls(
            holder=holder,
            balance=Decimal(str(entry["balance"])),
            limit=Decimal(str(entry["limit"])),
            authorised=entry.get("peer_authorized") is True,
            frozen_by_issuer=entry.get("freeze_peer") is True,
            frozen_by_holder=entry.get("freeze") is True,
            deep_frozen=entry.get("deep_freeze") is True or entry.get("deep_freeze_peer") is True,
        )


def check_escrowable(leg: Leg, issuer: Issuer) -> None:
    """An escrow of the token: the issuer allows it, is not the sender, and charges no
    fee the receiver would bear."""
    if not issuer.allows_locking:
        raise LegInvalid(
            f"issuer {issuer.address} does not allow its tokens in escrow "
            "(asfAllowTrustLineLocking is not set)"
        )
    if leg.sender == issuer.address:
        raise LegInvalid("an issuer cannot escrow its own token")
    if issuer.transfer_rate != TRANSFER_RATE_PARITY and leg.receiver != issuer.address:
        arrives = after_transfer_fee(leg.amount, issuer.transfer_rate)
        raise LegInvalid(
            f"issuer {issuer.address} charges a transfer fee (TransferRate "
            f"{issuer.transfer_rate}); an escrow takes it out of what it delivers, so "
            f"receiver {leg.receiver} would get {arrives} {leg.asset.code}, not "
            f"{leg.amount}: the transfer fee is not covered"
        )


def check_line(role: str, line: Line, issuer: Issuer, kind: LockKind, code: str) -> None:
    """Nothing stops the token on ``role``'s line: the issuer's global freeze, its
    authorisation where required, a deep freeze, a freeze by either side."""
    no_auth, frozen, where = _REFUSED_AT[kind]
    if issuer.frozen_globally:
        raise LegInvalid(
            f"issuer {issuer.address} has frozen every line of its tokens (lsfGlobalFreeze): "
            f"{role} {line.holder} cannot move {code} ({frozen} {where})"
        )
    named = f"{role} {line.holder}'s trust line for {code} of {issuer.address}"
    if issuer.requires_auth and not line.authorised:
        raise LegInvalid(
            f"{named} is not authorised, and the issuer requires authorisation "
            f"(lsfRequireAuth; {no_auth} {where})"
        )
    if line.deep_frozen:
        raise LegInvalid(f"{named} is deep-frozen (lsfDeepFreeze; {frozen} {where})")
    if line.frozen_by_issuer:
        raise LegInvalid(f"{named} is frozen by the issuer (lsfFreeze; {frozen} {where})")
    if line.frozen_by_holder:
        raise LegInvalid(
            f"{named} is frozen on the holder's own side (lsfFreeze; {frozen} {where})"
        )


def check_receiver_room(leg: Leg, line: Line, kind: LockKind) -> None:
    """The receiver's limit takes the whole amount."""
    if line.balance + leg.amount > line.limit:
        refusal = "tecLIMIT_EXCEEDED" if kind is LockKind.ESCROW else "tecPATH_PARTIAL"
        raise LegInvalid(
            f"receiver {leg.receiver}'s trust line limit {line.limit} cannot take "
            f"{leg.amount} more {leg.asset.code} ({refusal})"
        )
