"""The XRP Ledger adapter: the Chain port over rippled's JSON-RPC (xrpl-py)."""

from adapters.xrpl.chain import XrplChain

__all__ = ["XrplChain"]
