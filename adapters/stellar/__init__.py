"""The Stellar adapter: the Chain port over Horizon (stellar-sdk).

- ``chain``: ``StellarChain``: validate, lock / commit / unwind, submit, status, lookup;
- ``horizon``: typed reads and the one submission call, behind the chain's guard, and
  the one place stellar-sdk and requests exceptions are translated;
- ``results``: the exhaustive classification of Stellar transaction result codes;
- ``legs``: amounts, accounts, trustlines and reserves a leg must satisfy;
- ``fees``: the fee a transaction bids, from Horizon's fee statistics;
- ``timebounds``: ledger time and time bounds in whole seconds.
"""

from adapters.stellar.chain import StellarChain

__all__ = ["StellarChain"]
