"""``XrplNode``: the composition root of the local XRP Ledger network.

It wires the ledger chain, the clock, the fault plan, the JSON-RPC service, the HTTP
front and the optional ledger closer and snapshot directory. Every read and write of
ledger state happens under one lock (``RpcService.lock``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from xrpl.constants import CryptoAlgorithm
from xrpl.core.addresscodec import classic_address_to_xaddress, is_valid_classic_address
from xrpl.core.binarycodec import encode
from xrpl.models.transactions import Payment
from xrpl.transaction import sign
from xrpl.wallet import Wallet

from adapters.localnet.xrpl import hashing, persistence, protocol
from adapters.localnet.xrpl.amendments import enabled_set
from adapters.localnet.xrpl.clock import NodeClock
from adapters.localnet.xrpl.engine import LedgerChain
from adapters.localnet.xrpl.faults import FaultPlan
from adapters.localnet.xrpl.ledger import ClosedLedger
from adapters.localnet.xrpl.rpc import RpcService
from adapters.localnet.xrpl.server import HttpFront
from adapters.localnet.xrpl.transactors.base import FeeSchedule
from adapters.localnet.xrpl.txq import STANDALONE_EXPECTED_SIZE, EscalationSetup

_log = logging.getLogger(__name__)
DEFAULT_FAUCET_XRP = 1_000


class XrplNode:
    """An in-process XRP Ledger node speaking rippled's JSON-RPC over HTTP.

    ``close_interval_s`` of 0 closes ledgers only on ``ledger_accept`` (or
    ``close_ledger()``), like a standalone rippled; a positive value closes on a timer.
    With ``idle_interval_s`` the timer closes an open ledger that holds no transaction
    only once that long has passed since the last close, as rippled's consensus does
    (``shouldCloseLedger``: an idle ledger closes after the idle interval, 15 s on the
    network); without it every tick closes, as a script calling ``ledger_accept`` in a
    loop does. It matters for ledger time: each close time is at least its parent's
    + 1 s (``effCloseTime``), so empty ledgers closed faster than once a second push
    ledger time ahead of the wall clock without bound.
    Use as a context manager or call ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        *,
        close_interval_s: float = 0,
        data_dir: Path | None = None,
        base_fee_drops: int = 10,
        reserve_base_drops: int = 1_000_000,
        reserve_inc_drops: int = 200_000,
        network_id: int = 0,
        clock: NodeClock | None = None,
        idle_interval_s: float | None = None,
        amendments: Mapping[str, bool] | None = None,
        fee_escalation: bool = True,
        expected_ledger_size: int = STANDALONE_EXPECTED_SIZE,
        max_queue_size: int | None = None,
    ) -> None:
        if close_interval_s < 0:
            raise ValueError("close_interval_s must be >= 0")
        if idle_interval_s is not None and idle_interval_s <= 0:
            raise ValueError("idle_interval_s must be positive")
        self.idle_interval_s = idle_interval_s
        self.clock = clock or NodeClock()
        self.faults = FaultPlan()
        self.close_interval_s = close_interval_s
        self.data_dir = data_dir
        self.started_monotonic = time.monotonic()
        self.chain = LedgerChain(
            fees=FeeSchedule(base_fee_drops, reserve_base_drops, reserve_inc_drops),
            clock=self.clock,
            network_id=network_id,
            amendments=enabled_set(amendments),
            escalation=EscalationSetup(fee_escalation, expected_ledger_size, max_queue_size),
        )
        self._amendments_chosen = amendments is not None
        self.rpc = RpcService(self)
        self._genesis_wallet = Wallet.from_seed(
            protocol.GENESIS_SEED, algorithm=CryptoAlgorithm.SECP256K1
        )
        self._http = HttpFront(self.rpc, self.faults, self._fund)
        self._closer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._load_or_start_genesis()
        self.url: str | None = None

    # --- lifecycle ------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on a background thread; return the base URL (``http://host:port``)."""
        self.url = self._http.start(host, port)
        if self.close_interval_s > 0:
            self._closer = threading.Thread(
                target=self._close_periodically, name="xrpl-localnet-closer", daemon=True
            )
            self._closer.start()
        return self.url

    def stop(self) -> None:
        self._stopping.set()
        self._http.stop()
        if self._closer is not None:
            self._closer.join(timeout=5)

    def __enter__(self) -> XrplNode:
        if self.url is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- control --------------------------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        return self.rpc.lock

    def close_ledger(self) -> ClosedLedger:
        """Close (and validate) the open ledger now, whatever the fault plan says."""
        with self.lock:
            closed = self.chain.close()
            if self.data_dir is not None:
                persistence.save(self.data_dir, self.chain)
            return closed

    def advance_time(self, seconds: int) -> None:
        """Move the node clock forward; the next ledger to close carries the new time."""
        self.clock.advance(seconds)

    def fund(self, address: str | None = None, xrp: int = DEFAULT_FAUCET_XRP) -> dict[str, Any]:
        """Faucet in process: the same as ``POST /accounts``; raises on failure."""
        status, answer = self._fund(
            {"destination": address, "xrpAmount": xrp} if address else {"xrpAmount": xrp}
        )
        if status != 200:
            raise RuntimeError(f"faucet failed: {answer}")
        return answer

    # --- internals --------------------------------------------------------------------

    def _load_or_start_genesis(self) -> None:
        document = persistence.load(self.data_dir) if self.data_dir is not None else None
        if document is None:
            self.chain.start_genesis()
            return
        self.clock.advance(int(document.get("clock_offset_s", 0)))
        self.chain.network_id = int(document.get("network_id", self.chain.network_id))
        if "amendments" in document and not self._amendments_chosen:
            # Rules a ledger was built under stay with it, as enabled amendments do on a
            # network; an explicit choice at start-up still wins.
            self.chain.amendments = frozenset(document["amendments"])
        persistence.restore(self.chain, document)
        _log.info("restored XRPL localnet at ledger %s", self.chain.last_closed.header.sequence)

    def _close_periodically(self) -> None:
        last_close_s = time.monotonic()
        while not self._stopping.wait(self.close_interval_s):
            if self.faults.closing_stalled:
                continue
            if (
                self.idle_interval_s is not None
                and not self.chain.open_records
                and time.monotonic() - last_close_s < self.idle_interval_s
            ):
                continue
            self.close_ledger()
            last_close_s = time.monotonic()

    def _fund(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Pay from genesis, as the testnet faucet does; answer once it is validated."""
        destination = request.get("destination")
        seed: str | None = None
        if destination is None:
            wallet = Wallet.create()
            destination, seed = wallet.classic_address, wallet.seed
        if not isinstance(destination, str) or not is_valid_classic_address(destination):
            return 400, {"error": "destination is not a classic address"}
        xrp = request.get("xrpAmount", DEFAULT_FAUCET_XRP)
        if not isinstance(xrp, int) or isinstance(xrp, bool) or not 0 < xrp <= 1_000_000:
            return 400, {"error": "xrpAmount must be an integer from 1 to 1000000"}
        with self.lock:
            genesis = self.chain.open_state.read(hashing.account_index(protocol.GENESIS_ACCOUNT))
            assert genesis is not None
            payment = Payment(
                account=protocol.GENESIS_ACCOUNT,
                destination=destination,
                amount=str(xrp * protocol.DROPS_PER_XRP),
                # as a faucet does, pay what the open ledger asks, so a surge
                # delays no one's funding
                fee=str(self.chain.open_ledger_fee_drops()),
                sequence=int(genesis["Sequence"]),
                last_ledger_sequence=self.chain.open_sequence + 20,
            )
            signed = sign(payment, self._genesis_wallet)
            outcome = self.chain.submit(encode(signed.to_xrpl()))
            if outcome.engine_result != "tesSUCCESS":
                return 500, {"error": f"funding failed: {outcome.engine_result}"}
            if self.close_interval_s == 0:
                # A standalone node closes only when asked; the faucet asks, so the
                # account exists in a validated ledger when the answer arrives.
                self.close_ledger()
        self._wait_validated(outcome.tx_hash)
        with self.lock:
            validated = self.chain.last_closed.state
            assert validated is not None, "the last closed ledger always keeps its state"
            root = validated.read(hashing.account_index(destination))
        balance_drops = int(root["Balance"]) if root is not None else 0
        account: dict[str, Any] = {
            "xAddress": classic_address_to_xaddress(destination, None, is_test_network=True),
            "classicAddress": destination,
            "address": destination,
        }
        answer: dict[str, Any] = {
            "account": account,
            "amount": xrp,
            "balance": balance_drops // protocol.DROPS_PER_XRP,
            "transactionHash": outcome.tx_hash,
        }
        if seed is not None:
            account["secret"] = seed
            answer["seed"] = seed
        return 200, answer

    def _wait_validated(self, tx_hash: str) -> None:
        deadline = time.monotonic() + max(5.0, 4 * self.close_interval_s)
        while time.monotonic() < deadline:
            with self.lock:
                record = self.chain.transaction(tx_hash)
                if record is not None and self.chain.is_closed(record):
                    return
            time.sleep(min(0.05, self.close_interval_s or 0.05))


def run_node(
    port: int,
    close_interval_s: float,
    data_dir: Path | None,
    *,
    idle_interval_s: float | None = None,
    amendments: Mapping[str, bool] | None = None,
    network_id: int = 0,
    fee_escalation: bool = True,
    expected_ledger_size: int = STANDALONE_EXPECTED_SIZE,
) -> None:
    """Run a node in the foreground until interrupted (``settle node xrpl``)."""
    node = XrplNode(
        close_interval_s=close_interval_s,
        data_dir=data_dir,
        idle_interval_s=idle_interval_s,
        amendments=amendments,
        network_id=network_id,
        fee_escalation=fee_escalation,
        expected_ledger_size=expected_ledger_size,
    )
    url = node.start(host="127.0.0.1", port=port)
    _log.info("XRPL localnet serving JSON-RPC at %s", url)
    print(f"XRPL localnet: JSON-RPC at {url}, faucet at {url}/accounts", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()
