"""Instruction checks: everything about a settlement's legs that can be known before
anything is signed.

At least two legs on known chains; every leg valid on its ledger, including every rule by
which the ledger would refuse the leg's payout (the adapters' ``validate_leg``: deposit
authorisation, trust line authorisation or freeze, limits, transfer fees the receiver
would bear); no account on both sides of a leg; what each sender owes in each asset,
together; the principal legs in the commitment's currency pay exactly its amount against
a delivery in another asset; every account a KYC'd party's registered ledger account.
Then the lock primitive of each leg (``protocol.assign_lock_kinds``). Bad input is an
``InvalidInput`` naming the leg and the rule; nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from adapters.chain import Asset, Chain, ChainName, Leg, LockKind
from adapters.errors import AdapterError, LegInvalid
from settlement.domain import errors
from settlement.domain.settlements import LegKind
from settlement.dvp.protocol import assign_lock_kinds
from settlement.services.compliance import ComplianceService


@dataclass(frozen=True)
class LegInstruction:
    chain: ChainName
    asset: Asset
    amount: Decimal
    sender: str
    receiver: str
    #: a ``LegKind`` name; anything else is refused by the check
    kind: str = LegKind.PRINCIPAL

    def as_leg(self) -> Leg:
        return Leg(self.chain, self.asset, self.amount, self.sender, self.receiver)


class InstructionCheck:
    def __init__(
        self, chains: Mapping[ChainName, Chain], accounts: ComplianceService | None
    ) -> None:
        self._chains = chains
        self._accounts = accounts

    def check(
        self,
        legs: Sequence[LegInstruction],
        *,
        commitment_id: UUID,
        owner: str,
        amount: Decimal,
        currency: str,
    ) -> list[LockKind]:
        """Check the legs (``InvalidInput`` on the first problem, ``EngineUnavailable``
        when a ledger cannot be asked) and return each leg's lock primitive."""
        self._check_shapes(legs)
        kinds = assign_lock_kinds([self._offered(leg) for leg in legs])
        for n, (leg, kind) in enumerate(zip(legs, kinds, strict=True)):
            try:
                self._chains[leg.chain].validate_leg(leg.as_leg(), kind=kind)
            except LegInvalid as exc:
                raise errors.InvalidInput(f"leg {n} ({leg.chain} {leg.asset.code}): {exc}") from exc
            except AdapterError as exc:
                raise errors.EngineUnavailable(f"{leg.chain} cannot check leg {n}: {exc}") from exc
        self._check_sender_totals(legs, kinds)
        self._check_amounts(legs, amount, currency)
        if self._accounts is not None:
            self._check_accounts(commitment_id, owner, legs)
        return kinds

    def _offered(self, leg: LegInstruction) -> LockKind:
        try:
            return self._chains[leg.chain].lock_kind(leg.as_leg())
        except AdapterError as exc:
            raise errors.EngineUnavailable(
                f"{leg.chain} cannot say how to lock the leg: {exc}"
            ) from exc

    def _check_shapes(self, legs: Sequence[LegInstruction]) -> None:
        if len(legs) < 2:
            raise errors.InvalidInput("a settlement has at least two legs")
        for n, leg in enumerate(legs):
            if leg.chain not in self._chains:
                raise errors.InvalidInput(f"leg {n}: no adapter for chain {leg.chain!r}")
            if leg.kind not in (LegKind.PRINCIPAL, LegKind.FEE):
                raise errors.InvalidInput(
                    f"leg {n}: kind must be principal or fee, not {leg.kind!r}"
                )
            if leg.sender == leg.receiver:
                raise errors.InvalidInput(f"leg {n} sends from {leg.sender} to itself")
            if not isinstance(leg.amount, Decimal) or not leg.amount.is_finite() or leg.amount <= 0:
                raise errors.InvalidAmount(
                    f"leg {n}: amount must be a positive Decimal: {leg.amount!r}"
                )

    @staticmethod
    def _check_amounts(legs: Sequence[LegInstruction], amount: Decimal, currency: str) -> None:
        principal = [leg for leg in legs if leg.kind == LegKind.PRINCIPAL]
        if not any(leg.asset.code != currency for leg in principal):
            # delivery versus payment: something is delivered against the payment
            raise errors.InvalidInput(f"no principal leg delivers anything against {currency}")
        paid = sum(
            (leg.amount for leg in principal if leg.asset.code == currency),
            Decimal(0),
        )
        if paid != amount:
            raise errors.InvalidInput(
                f"the principal legs pay {paid} {currency}; the commitment is for {amount}"
            )

    def _check_accounts(
        self, commitment_id: UUID, owner: str, legs: Sequence[LegInstruction]
    ) -> None:
        """Every account on a leg is a KYC'd party's registered ledger account; the
        principal legs move only between the commitment's own parties (its allocator
        and its counterparty), and a fee is paid by one of them."""
        assert self._accounts is not None
        parties = {owner}
        counterparty = self._accounts.counterparty_of(commitment_id)
        if counterparty is not None:
            parties.add(counterparty)
        wanted = sorted({(leg.chain.value, a) for leg in legs for a in (leg.sender, leg.receiver)})
        owners = self._accounts.owners_of(wanted)
        for leg in legs:
            for role, account in (("sender", leg.sender), ("receiver", leg.receiver)):
                party = owners.get((leg.chain.value, account))
                if party is None:
                    raise errors.InvalidInput(
                        f"{leg.chain} {role} {account} is not a registered account of any party"
                    )
                if (leg.kind == LegKind.PRINCIPAL or role == "sender") and party not in parties:
                    raise errors.InvalidInput(
                        f"{leg.chain} {role} {account} belongs to {party}, not to a party of "
                        f"commitment {commitment_id} ({', '.join(sorted(parties))})"
                    )

    def _check_sender_totals(
        self, legs: Sequence[LegInstruction], kinds: Sequence[LockKind]
    ) -> None:
        """Legs may pass one by one yet not together: check what each sender owes in
        each asset, as one leg, when it sends more than one."""
        groups: dict[tuple[ChainName, str, Asset], list[LegInstruction]] = {}
        kind_of: dict[tuple[ChainName, str, Asset], LockKind] = {}
        for leg, kind in zip(legs, kinds, strict=True):
            groups.setdefault((leg.chain, leg.sender, leg.asset), []).append(leg)
            kind_of.setdefault((leg.chain, leg.sender, leg.asset), kind)
        for (chain, sender, asset), together in groups.items():
            if len(together) < 2:
                continue
            total = sum((leg.amount for leg in together), Decimal(0))
            combined = Leg(chain, asset, total, sender, together[0].receiver)
            try:
                self._chains[chain].validate_leg(combined, kind=kind_of[chain, sender, asset])
            except LegInvalid as exc:
                raise errors.InvalidInput(f"{chain} legs of {sender} together: {exc}") from exc


__all__ = ["InstructionCheck", "LegInstruction"]
