"""What every operation needs: its context, reserve arithmetic, and result builders.

Reserve rule (stellar-core getMinBalance, protocol >= 14):
    min balance = (2 + subentries + sponsoring - sponsored) x base reserve
and an account may only spend what is above it (there are no offers here, so
selling liabilities are always zero).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from stellar_sdk import xdr as x

from adapters.localnet.stellar.amounts import INT64_MAX
from adapters.localnet.stellar.codes import INNER_RESULT_FIELDS
from adapters.localnet.stellar.state import Account, Entries, TrustLine
from adapters.localnet.stellar.xdrutil import AssetKey

ACCOUNT_SUBENTRY_LIMIT = 1000  # stellar-core ACCOUNT_SUBENTRY_LIMIT
UINT32_MAX = 2**32 - 1


class ThresholdLevel(Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class LedgerContext:
    """The header fields of the ledger being closed (or, before a ledger, the next one)."""

    sequence: int
    close_time: int
    base_fee: int
    base_reserve: int


@dataclass
class OpContext:
    entries: Entries  # a fork; the caller adopts it only if the operation succeeds
    ledger: LedgerContext
    tx_source: str
    tx_seq: int
    op_index: int
    source: str  # the operation's source account (defaults to the transaction's)

    def source_account(self) -> Account:
        # OperationFrame::checkValid has already answered op_no_source_account if missing.
        return self.entries.accounts[self.source]


def min_balance(account: Account, base_reserve: int) -> int:
    entries = 2 + account.num_subentries + account.num_sponsoring - account.num_sponsored
    return entries * base_reserve


def available_balance(account: Account, base_reserve: int) -> int:
    return account.balance - min_balance(account, base_reserve)


def add_native(account: Account, delta: int, base_reserve: int) -> Account | None:
    """stellar-core addBalance for an account: None if a debit would dip into the
    reserve or a credit would overflow int64."""
    new_balance = account.balance + delta
    if new_balance < 0 or new_balance > INT64_MAX:
        return None
    if delta < 0 and new_balance < min_balance(account, base_reserve):
        return None
    return replace(account, balance=new_balance)


def add_trust_balance(line: TrustLine, delta: int) -> TrustLine | None:
    """TrustLineWrapper::addBalance: never below zero, never above the limit."""
    new_balance = line.balance + delta
    if new_balance < 0 or new_balance > line.limit:
        return None
    return replace(line, balance=new_balance)


def trust_line_or_issuer(entries: Entries, account_id: str, asset: AssetKey) -> TrustLine | None:
    """Load `account_id`'s line for `asset`. The issuer has no trust line: stellar-core's
    TrustLineWrapper gives it an always-authorized, unlimited one, and issuing or
    receiving back its own asset never fails. Callers test `is_issuer` before writing."""
    if account_id == asset.issuer:
        return TrustLine(account_id, asset, INT64_MAX, INT64_MAX, 1)
    return entries.trustlines.get((account_id, asset))


def credit_asset(entries: Entries, account_id: str, asset: AssetKey, delta: int) -> str | None:
    """Move `delta` of a credit asset into (or out of) `account_id`'s line.

    Returns None on success or the reason: "no_trust", "not_authorized", "limit" (line full
    or underfunded, depending on the sign of delta)."""
    if account_id == asset.issuer:
        return None  # issuing or burning
    line = entries.trustlines.get((account_id, asset))
    if line is None:
        return "no_trust"
    if not line.is_authorized:
        return "not_authorized"
    updated = add_trust_balance(line, delta)
    if updated is None:
        return "limit"
    entries.trustlines[(account_id, asset)] = updated
    return None


def can_add_subentries(account: Account, count: int, base_reserve: int) -> str | None:
    """canCreateEntryWithoutSponsorship: the limit first, then the reserve for the new entry."""
    if account.num_subentries + count > ACCOUNT_SUBENTRY_LIMIT:
        return "too_many_subentries"
    if available_balance(account, base_reserve) < count * base_reserve:
        return "low_reserve"
    return None


def outer_result(code: x.OperationResultCode) -> x.OperationResult:
    return x.OperationResult(code)


def inner_result(op_type: x.OperationType, result: Any) -> x.OperationResult:
    """Wrap an inner result (e.g. x.PaymentResult) into an opINNER OperationResult."""
    tr = x.OperationResultTr(op_type, **{INNER_RESULT_FIELDS[op_type]: result})
    return x.OperationResult(x.OperationResultCode.opINNER, tr)


def is_success(result: x.OperationResult) -> bool:
    if result.code != x.OperationResultCode.opINNER:
        return False
    assert result.tr is not None
    inner = getattr(result.tr, INNER_RESULT_FIELDS[result.tr.type])
    return int(inner.code) == 0


def is_string_valid(text: bytes) -> bool:
    """stellar-core isStringValid: printable ASCII only (0x20..0x7e)."""
    return all(0x20 <= c <= 0x7E for c in text)
