"""The amendments this node implements, and which of them a ledger has enabled.

rippled names each amendment by the SHA-512Half of its name (``Feature.cpp``,
``registerFeature``), and the ``feature`` method lists them with whether each is
enabled and supported. This node implements the rules of the amendments below; rules
whose amendment is off behave as on a network that has not enabled it (for example a
token ``EscrowCreate`` without TokenEscrow is ``temBAD_AMOUNT``).

``OPTIONAL`` ones can be switched per node (``settle node xrpl --amendments``); the rest
are always on, as they are on mainnet and every testnet today. An amendment the node
does not implement is not listed: its transactions answer ``temDISABLED``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from adapters.localnet.xrpl.hashing import sha512_half

TOKEN_ESCROW: Final = "TokenEscrow"  # noqa: S105 - an amendment name, not a secret
DEEP_FREEZE: Final = "DeepFreeze"

# Rules this node builds that every public network has enabled; they cannot be switched.
ALWAYS_ON: Final[tuple[str, ...]] = (
    "DepositAuth",
    "DepositPreauth",
    "TicketBatch",
    "fix1543",  # escrow and payment flags checked strictly
    "fix1571",  # EscrowCreate needs FinishAfter or Condition
    "fix1523",  # escrows listed in the destination's owner directory
    "RequireFullyCanonicalSig",
)

# Switchable per node, with the state a fresh node starts in.
OPTIONAL: Final[Mapping[str, bool]] = {
    TOKEN_ESCROW: True,
    DEEP_FREEZE: True,
}


class UnknownAmendment(ValueError):
    """An amendment name this node does not implement or cannot switch."""


def amendment_id(name: str) -> str:
    """rippled's feature id: SHA-512Half of the name, upper-case hex."""
    return sha512_half(name.encode()).hex().upper()


def enabled_set(overrides: Mapping[str, bool] | None = None) -> frozenset[str]:
    """The enabled amendments: every always-on one, the optional ones as overridden.

    Raises ``UnknownAmendment`` for a name that is not optional here.
    """
    chosen = dict(OPTIONAL)
    for name, on in (overrides or {}).items():
        if name not in OPTIONAL:
            raise UnknownAmendment(
                f"amendment {name!r} cannot be switched here; optional: {', '.join(OPTIONAL)}"
            )
        chosen[name] = on
    return frozenset(ALWAYS_ON) | {name for name, on in chosen.items() if on}


def parse_switches(specs: Iterable[str]) -> dict[str, bool]:
    """``["TokenEscrow=off", "DeepFreeze=on"]`` -> ``{"TokenEscrow": False, ...}``.

    A bare name means on. Raises ``UnknownAmendment`` for an unknown name or state.
    """
    switches: dict[str, bool] = {}
    for spec in specs:
        for part in spec.split(","):
            name, _, state = part.strip().partition("=")
            if not name:
                continue
            if state.lower() in ("", "on", "true", "1"):
                switches[name] = True
            elif state.lower() in ("off", "false", "0"):
                switches[name] = False
            else:
                raise UnknownAmendment(f"amendment state must be on or off, not {state!r}")
    enabled_set(switches)  # refuse unknown names now, not when the node starts
    return switches


def implemented() -> tuple[str, ...]:
    """Every amendment this node knows, always-on first."""
    return (*ALWAYS_ON, *OPTIONAL)


# Feature id -> name, for every amendment this node implements (hashed once).
BY_ID: Final[Mapping[str, str]] = {amendment_id(name): name for name in implemented()}


def find(name_or_id: str) -> str | None:
    """The feature id of an implemented amendment named by name or by id, else None.

    As rippled's ``feature`` method: the name first, then the text as a hex id.
    """
    if name_or_id in implemented():
        return amendment_id(name_or_id)
    candidate = name_or_id.upper()
    return candidate if candidate in BY_ID else None
