"""The screening policy: thresholds from settings, jurisdictions and limits from config/.

``config/jurisdictions.toml``::

    blocked = ["KP", ...]      # a party here is a hard fail
    high_risk = ["MM", ...]    # a party here is flagged for the officer

``config/limits.toml`` (amounts as decimal strings, per currency; ``"*"`` for any other)::

    [max_commitment]           # one commitment
    [party_rolling_24h]        # one party's commitments submitted in the last 24 hours
    [asset_open_cap]           # all open commitments (under review, verified, escrowed)

A limit that is absent for a currency (and without ``"*"``) does not apply.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any

from compliance.errors import PolicyError

_COUNTRY = re.compile(r"[A-Z]{2}")
_CURRENCY = re.compile(r"[A-Z0-9]{1,12}|\*")
LIMIT_KINDS = ("max_commitment", "party_rolling_24h", "asset_open_cap")


@dataclass(frozen=True)
class Limits:
    """Per-currency amounts; ``for_currency`` falls back to the ``"*"`` entry."""

    amounts: Mapping[str, Decimal] = field(default_factory=dict)

    def for_currency(self, currency: str) -> Decimal | None:
        return self.amounts.get(currency.upper(), self.amounts.get("*"))


@dataclass(frozen=True)
class ScreeningPolicy:
    #: a name scoring at least this (0-100) against a list name or alias is a hit
    match_threshold: int
    #: a commitment whose amount is strictly above this needs two distinct officers
    four_eyes_threshold: Decimal
    blocked_jurisdictions: frozenset[str] = frozenset()
    high_risk_jurisdictions: frozenset[str] = frozenset()
    max_commitment: Limits = field(default_factory=Limits)
    party_rolling_24h: Limits = field(default_factory=Limits)
    asset_open_cap: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if not 50 <= self.match_threshold <= 100:
            raise PolicyError("the sanctions match threshold must be between 50 and 100")
        if self.four_eyes_threshold < 0:
            raise PolicyError("the four-eyes threshold cannot be negative")
        both = self.blocked_jurisdictions & self.high_risk_jurisdictions
        if both:
            raise PolicyError(f"jurisdictions both blocked and high-risk: {sorted(both)}")

    def approvals_required(self, amount: Decimal) -> int:
        return 2 if amount > self.four_eyes_threshold else 1


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {path} is not valid TOML: {exc}") from exc


def _countries(values: object, name: str, path: Path) -> frozenset[str]:
    if not isinstance(values, list) or not all(
        isinstance(v, str) and _COUNTRY.fullmatch(v) for v in values
    ):
        raise PolicyError(f"{path}: {name} must be a list of ISO 3166 alpha-2 codes")
    return frozenset(values)


def _limits(table: object, name: str, path: Path) -> Limits:
    if table is None:
        return Limits()
    if not isinstance(table, dict):
        raise PolicyError(f"{path}: [{name}] must be a table of currency = amount")
    amounts: dict[str, Decimal] = {}
    for currency, raw in table.items():
        if not _CURRENCY.fullmatch(currency) or not isinstance(raw, str | int):
            raise PolicyError(f"{path}: {name}.{currency} must be an amount as a decimal string")
        try:
            amount = Decimal(raw)
        except InvalidOperation:
            raise PolicyError(f"{path}: {name}.{currency} = {raw!r} is not a number") from None
        if not amount.is_finite() or amount <= 0:
            raise PolicyError(f"{path}: {name}.{currency} must be a positive amount")
        amounts[currency] = amount
    return Limits(MappingProxyType(amounts))


def load_policy(
    *,
    match_threshold: int,
    four_eyes_threshold: Decimal,
    jurisdictions_file: Path,
    limits_file: Path,
) -> ScreeningPolicy:
    """Read the policy files; ``PolicyError`` naming the file and key on any problem."""
    jurisdictions = _load_toml(jurisdictions_file)
    unknown = set(jurisdictions) - {"blocked", "high_risk"}
    if unknown:
        raise PolicyError(f"{jurisdictions_file}: unknown keys {sorted(unknown)}")
    limits = _load_toml(limits_file)
    unknown = set(limits) - set(LIMIT_KINDS)
    if unknown:
        raise PolicyError(f"{limits_file}: unknown tables {sorted(unknown)}")
    return ScreeningPolicy(
        match_threshold=match_threshold,
        four_eyes_threshold=four_eyes_threshold,
        blocked_jurisdictions=_countries(
            jurisdictions.get("blocked", []), "blocked", jurisdictions_file
        ),
        high_risk_jurisdictions=_countries(
            jurisdictions.get("high_risk", []), "high_risk", jurisdictions_file
        ),
        max_commitment=_limits(limits.get("max_commitment"), "max_commitment", limits_file),
        party_rolling_24h=_limits(
            limits.get("party_rolling_24h"), "party_rolling_24h", limits_file
        ),
        asset_open_cap=_limits(limits.get("asset_open_cap"), "asset_open_cap", limits_file),
    )
