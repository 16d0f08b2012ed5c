"""Ledger entries and history records of the local Stellar network.

Entries are frozen dataclasses held in plain dicts. Applying an operation works on
a `fork()` of the entries (four shallow dict copies) and adopts the fork only if the
operation succeeds, which is how stellar-core's nested LedgerTxn rolls back a failed
operation or transaction without a partial write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from adapters.localnet.stellar.xdrutil import Asset, AssetKey

K = TypeVar("K")

# Account flags (AccountFlags in Stellar-ledger-entries.x).
AUTH_REQUIRED_FLAG = 0x1
AUTH_REVOCABLE_FLAG = 0x2
AUTH_IMMUTABLE_FLAG = 0x4
AUTH_CLAWBACK_ENABLED_FLAG = 0x8
ALL_ACCOUNT_FLAGS = 0xF

# Trust line flags (TrustLineFlags).
TRUSTLINE_AUTHORIZED_FLAG = 0x1
TRUSTLINE_AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG = 0x2
TRUSTLINE_CLAWBACK_ENABLED_FLAG = 0x4

# Claimable balance flags.
CLAIMABLE_BALANCE_CLAWBACK_ENABLED_FLAG = 0x1


@dataclass(frozen=True)
class Signer:
    key: str  # G... / T... / X... strkey
    weight: int


@dataclass(frozen=True)
class Account:
    account_id: str
    balance: int  # stroops
    seq_num: int
    num_subentries: int = 0
    num_sponsoring: int = 0
    num_sponsored: int = 0
    master_weight: int = 1
    low_threshold: int = 0
    med_threshold: int = 0
    high_threshold: int = 0
    signers: tuple[Signer, ...] = ()
    flags: int = 0
    home_domain: str = ""
    # Set whenever the sequence number moves (protocol 19 AccountEntryExtensionV3).
    seq_ledger: int = 0
    seq_time: int = 0
    last_modified_ledger: int = 0


@dataclass(frozen=True)
class TrustLine:
    account_id: str
    asset: AssetKey
    balance: int
    limit: int
    flags: int
    last_modified_ledger: int = 0

    @property
    def is_authorized(self) -> bool:
        return bool(self.flags & TRUSTLINE_AUTHORIZED_FLAG)


@dataclass(frozen=True)
class DataEntry:
    account_id: str
    name: str
    value: bytes
    last_modified_ledger: int = 0


@dataclass(frozen=True)
class Claimant:
    destination: str
    # base64 XDR of the ClaimPredicate, with relative times already made absolute
    # (stellar-core rewrites them at creation).
    predicate_xdr: str


@dataclass(frozen=True)
class ClaimableBalance:
    balance_id: str  # 72 hex characters, as Horizon prints it
    asset: Asset
    amount: int
    claimants: tuple[Claimant, ...]
    sponsor: str
    flags: int = 0
    last_modified_ledger: int = 0


@dataclass
class Entries:
    """The current ledger entries. Fork before changing; adopt the fork to commit."""

    accounts: dict[str, Account] = field(default_factory=dict)
    trustlines: dict[tuple[str, AssetKey], TrustLine] = field(default_factory=dict)
    data: dict[tuple[str, str], DataEntry] = field(default_factory=dict)
    claimable_balances: dict[str, ClaimableBalance] = field(default_factory=dict)

    def fork(self) -> Entries:
        return Entries(
            dict(self.accounts),
            dict(self.trustlines),
            dict(self.data),
            dict(self.claimable_balances),
        )

    def changed_accounts(self, before: Entries) -> set[str]:
        """Accounts whose own entry or trust lines differ from `before` (Horizon's participants)."""
        changed: set[str] = set()
        changed.update(_differing(self.accounts, before.accounts))
        changed.update(owner for owner, _ in _differing(self.trustlines, before.trustlines))
        changed.update(owner for owner, _ in _differing(self.data, before.data))
        # A created or claimed balance concerns its sponsor and every claimant.
        for balance_id in self.claimable_balances.keys() ^ before.claimable_balances.keys():
            balance = (
                self.claimable_balances.get(balance_id) or before.claimable_balances[balance_id]
            )
            changed.add(balance.sponsor)
            changed.update(c.destination for c in balance.claimants)
        return changed


def _differing(mine: Mapping[K, object], theirs: Mapping[K, object]) -> set[K]:
    """Keys whose entry was added, removed or replaced (entries are immutable)."""
    return {key for key in mine.keys() | theirs.keys() if mine.get(key) is not theirs.get(key)}


@dataclass(frozen=True)
class LedgerRecord:
    sequence: int
    hash: str
    prev_hash: str
    closed_at: int  # unix seconds
    successful_transaction_count: int
    failed_transaction_count: int
    operation_count: int
    tx_set_operation_count: int
    total_coins: int
    fee_pool: int
    base_fee: int
    base_reserve: int
    max_tx_set_size: int
    protocol_version: int
    header_xdr: str


@dataclass(frozen=True)
class TxRecord:
    hash: str
    ledger: int
    application_order: int  # 1-based position in its ledger, as in Horizon's TOID
    closed_at: int
    envelope_xdr: str
    result_xdr: str
    result_meta_xdr: str
    fee_meta_xdr: str
    successful: bool
    source_account: str
    source_account_sequence: int
    fee_account: str
    fee_charged: int
    max_fee: int
    operation_count: int
    participants: tuple[str, ...]
    inner_hash: str = ""  # a fee bump's inner transaction hash; "" for other transactions

    @property
    def paging_token(self) -> str:
        return str(toid(self.ledger, self.application_order, 0))


def toid(ledger: int, tx_order: int, op_index: int) -> int:
    """Horizon's total order id: 32 bits of ledger, 20 of transaction, 12 of operation."""
    return (ledger << 32) | (tx_order << 12) | op_index
