"""A local Stellar network that speaks Horizon's REST API.

stellar-sdk's `Server`, unchanged, works against it as against Horizon with
stellar-core behind it: real signatures and thresholds, sequence numbers, fees and
reserves, stellar-core's result codes and its one-transaction-per-account queue, both
submission routes (POST /transactions waits for the ledger, POST /transactions_async
answers with core's queue status at once), ledgers that close on a timer with a clock
tests can move, and injectable faults. Public entry points:

- `StellarNode`: the in-process node (`start()`, `stop()`, `close_ledger()`,
  `advance_time()`, `faults`);
- `run_node()`: run one until interrupted, for `settle node stellar`.
"""

from adapters.localnet.stellar.clock import NodeClock
from adapters.localnet.stellar.faults import Faults
from adapters.localnet.stellar.node import STANDALONE_PASSPHRASE, StellarNode, run_node

__all__ = ["STANDALONE_PASSPHRASE", "Faults", "NodeClock", "StellarNode", "run_node"]
