"""Errors of the chain adapters::

    AdapterError
    ├── LegInvalid            the leg cannot settle as given (precision, accounts, trust)
    ├── SigningUnavailable    no key for an account the engine must sign for
    ├── AccountNotFound       the ledger holds no such account (a balance read)
    └── TransportError        the ledger could not be reached (counted by the breaker)
        └── BreakerOpen       the breaker is open; the call was not attempted

Ledger results are never errors: they are ``adapters.chain.Outcome`` values.
xrpl-py, stellar-sdk and httpx exceptions are translated in each adapter's one
``_transport`` function.
"""

from __future__ import annotations


class AdapterError(Exception):
    """Base of the adapters' errors."""


class LegInvalid(AdapterError, ValueError):
    """The leg cannot settle as given; the message says why."""


class SigningUnavailable(AdapterError):
    """The engine holds no key for an account it must sign for."""


class AccountNotFound(AdapterError, LookupError):
    """The latest validated ledger holds no account of that address: never created, or
    merged away. Not a zero balance: an account that does not exist cannot receive."""


class TransportError(AdapterError):
    """A refused connection, a timeout, a 5xx: the ledger was not reached."""


class BreakerOpen(TransportError):
    """The chain's circuit breaker is open; calls fail fast until it half-opens."""
