"""A local XRP Ledger network that speaks rippled's JSON-RPC over HTTP.

xrpl-py's ``JsonRpcClient`` works against it unchanged. Start one in process::

    with XrplNode() as node:
        client = JsonRpcClient(node.url)

Layout: ``engine`` (the ledger chain), ``apply`` and ``transactors/`` (transaction
rules), ``state``/``trustlines``/``accounts`` (ledger objects), ``rpc`` (method
shapes), ``server`` (HTTP and wire faults), ``faults``, ``persistence``, ``node``
(composition).
"""

from adapters.localnet.xrpl.clock import NodeClock
from adapters.localnet.xrpl.faults import FaultPlan
from adapters.localnet.xrpl.node import XrplNode, run_node

__all__ = ["FaultPlan", "NodeClock", "XrplNode", "run_node"]
