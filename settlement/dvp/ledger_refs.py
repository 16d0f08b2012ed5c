"""Checking an audit entry's ledger reference against the ledger it names."""

from __future__ import annotations

from collections.abc import Mapping

from adapters.chain import Chain, ChainName
from adapters.errors import AdapterError
from ledger.audit import LedgerRefCheck


def ledger_ref_checker(chains: Mapping[ChainName, Chain]) -> LedgerRefCheck:
    """A check for ``ledger.audit.verify_all``: the transaction must be in a validated
    ledger with the recorded index and ledger hash. Returns what is wrong, or None."""

    def check(chain: str, tx_hash: str, index: int | None, ledger_hash: str | None) -> str | None:
        try:
            adapter = chains[ChainName(chain)]
        except (ValueError, KeyError):
            return f"no adapter for chain {chain!r}"
        try:
            tx = adapter.lookup(tx_hash)
        except AdapterError as exc:
            return f"{chain} could not be asked: {exc}"
        if tx is None:
            return f"{tx_hash} is not on the {chain} ledger"
        if not tx.validated:
            return f"{tx_hash} is not in a validated ledger"
        if (tx.ledger_index, tx.ledger_hash) != (index, ledger_hash):
            return (
                f"recorded ledger {index} {ledger_hash} but the ledger has "
                f"{tx.ledger_index} {tx.ledger_hash}"
            )
        return None

    return check
