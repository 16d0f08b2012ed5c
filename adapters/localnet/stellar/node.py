"""StellarNode: the composition root of the local Stellar network.

It owns the ledger (behind one lock), the clock, the fault handle, the ledger-close
timer and the HTTP server, and implements Horizon's two submission routes:

- `submit()` (POST /transactions) answers at once for a transaction already in a
  ledger (so resubmitting after a timeout is safe), refuses an invalid one without
  touching the ledger, and otherwise waits for the ledger that includes it, up to
  `submission_timeout_s`;
- `submit_async()` (POST /transactions_async) relays stellar-core's verdict on adding
  the transaction to its queue and does not wait: 201 PENDING (queued), 409 DUPLICATE
  (this envelope is already queued), 400 ERROR with the TransactionResult (refused
  before a ledger: tx_bad_seq, tx_bad_auth, tx_insufficient_fee, tx_too_early,
  tx_too_late, ...), 503 TRY_AGAIN_LATER (core will not take it now: the source
  account already has another transaction queued). Like Horizon's handler it never
  reads history: an envelope that already applied gets core's answer to its used
  sequence number, ERROR tx_bad_seq.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from stellar_sdk import Account as SdkAccount
from stellar_sdk import Keypair, StrKey, TransactionBuilder
from stellar_sdk import xdr as x

from adapters.localnet.stellar import horizon, persistence, problems
from adapters.localnet.stellar.clock import NodeClock
from adapters.localnet.stellar.faults import AfterApply, Faults
from adapters.localnet.stellar.ledger import MAX_TX_SET_SIZE, AddStatus, LocalLedger, tx_result
from adapters.localnet.stellar.replies import Reply
from adapters.localnet.stellar.server import make_server
from adapters.localnet.stellar.state import TxRecord
from adapters.localnet.stellar.transaction import parse_envelope
from adapters.localnet.stellar.xdrutil import root_keypair

STANDALONE_PASSPHRASE = "Standalone Network ; February 2017"  # noqa: S105 - a network name
FRIENDBOT_STARTING_BALANCE_STROOPS = 10_000 * 10_000_000  # what testnet's friendbot gives
STREAM_WAIT_SLICE_S = 0.25  # how often a waiting event stream checks its client is there
log = logging.getLogger(__name__)


class _Waiter:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.record: TxRecord | None = None
        self.refusal: x.TransactionResult | None = None


class StellarNode:
    """An in-process Stellar network that serves Horizon's REST API over HTTP.

    Thread-safe. Ledger state changes only when a ledger closes: on the timer every
    `close_interval_s` (0 = only on `close_ledger()`), with close times from `clock`
    that strictly increase, whole seconds, as stellar-core's do. A ledger holds
    `max_tx_set_size` operations (testnet's 100 by default) and surge pricing applies
    past that; None lifts the limit, so every valid queued transaction goes into the
    next ledger (load generators that flood one ledger on purpose).
    """

    def __init__(
        self,
        *,
        close_interval_s: float = 1.0,
        data_dir: Path | None = None,
        base_fee_stroops: int = 100,
        base_reserve_stroops: int = 5_000_000,
        network_passphrase: str = STANDALONE_PASSPHRASE,
        clock: NodeClock | None = None,
        submission_timeout_s: float = 30.0,
        max_tx_set_size: int | None = MAX_TX_SET_SIZE,
    ) -> None:
        if close_interval_s < 0:
            raise ValueError("close_interval_s must be >= 0")
        self.close_interval_s = close_interval_s
        self.network_passphrase = network_passphrase
        self.submission_timeout_s = submission_timeout_s
        self.clock = clock or NodeClock()
        self.faults = Faults()
        self.root_keypair: Keypair = root_keypair(network_passphrase)
        self._data_dir = data_dir
        self._lock = threading.RLock()
        self._closed = threading.Condition(self._lock)
        self._waiters: dict[str, list[_Waiter]] = {}
        self._friendbot_lock = threading.Lock()
        self._stop = threading.Event()
        self._closer: threading.Thread | None = None
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self.base_url = ""

        restored = persistence.load(data_dir, network_passphrase) if data_dir else None
        if restored is not None:
            self._ledger, offset_s = restored
            self._ledger.max_tx_set_size = max_tx_set_size
            self.clock.restore_offset(offset_s)
        else:
            self._ledger = LocalLedger(
                network_passphrase, base_fee_stroops, base_reserve_stroops, max_tx_set_size
            )
            # Close ledger 2 at once so the last close time is "now", not genesis (1970):
            # time-bound checks before a ledger read the last close time.
            self.close_ledger()

    # -- lifecycle -------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve HTTP on a background thread and start the close timer; returns the base URL."""
        if self._server is not None:
            return self.base_url
        self._stop.clear()
        self._server = make_server(self, host, port)
        bound_host, bound_port = self._server.server_address[:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, name="stellar-horizon", daemon=True
        )
        self._server_thread.start()
        if self.close_interval_s > 0:
            self._closer = threading.Thread(
                target=self._close_loop, name="stellar-closer", daemon=True
            )
            self._closer.start()
        return self.base_url

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._closed.notify_all()  # open event streams end now
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._closer is not None:
            self._closer.join(timeout=5)
            self._closer = None
        with self._lock:
            # Wake every waiting submission: it will answer 504 (outcome unknown).
            for waiters in self._waiters.values():
                for waiter in waiters:
                    waiter.done.set()

    def __enter__(self) -> StellarNode:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- time and ledgers --------------------------------------------------------------

    def advance_time(self, seconds: int) -> None:
        """Move the node clock forward; the next ledger closes at the new time."""
        self.clock.advance(seconds)

    def close_ledger(self) -> int:
        """Close the next ledger now (whatever the timer and faults say); returns its sequence."""
        with self._lock:
            close_time = max(self.clock.now(), self._ledger.last_closed.closed_at + 1)
            closed = self._ledger.close(close_time)
            if self._data_dir is not None:
                persistence.save(self._data_dir, self._ledger, self.clock.offset_s)
            for record in closed.applied:
                for waiter in self._waiters.pop(record.hash, []):
                    waiter.record = record
                    waiter.done.set()
            for tx_hash, result in closed.dropped.items():
                for waiter in self._waiters.pop(tx_hash, []):
                    waiter.refusal = result
                    waiter.done.set()
            self._release(closed.evicted)
            self._closed.notify_all()
            return closed.record.sequence

    def _release(self, evicted: list[str] | tuple[str, ...]) -> None:
        """Wake the submissions of transactions the queue dropped: like Horizon, they
        answer 504 (the outcome is unknown to the submitter). Holds the lock."""
        for tx_hash in evicted:
            for waiter in self._waiters.pop(tx_hash, []):
                waiter.done.set()

    def wait_for_ledger(self, sequence: int, timeout_s: float = 10.0) -> bool:
        """Block until ledger `sequence` has closed; False on timeout."""
        with self._lock:
            return self._closed.wait_for(
                lambda: self._ledger.last_closed.sequence >= sequence, timeout=timeout_s
            )

    def wait_next_ledger(self, after: int, gone: Callable[[], bool]) -> int | None:
        """For an event stream: the sequence of the first ledger closed after `after`;
        None once the node stops or `gone()` says the client left."""
        while True:
            with self._lock:
                self._closed.wait_for(
                    lambda: self._ledger.last_closed.sequence > after or self._stop.is_set(),
                    timeout=STREAM_WAIT_SLICE_S,
                )
                if self._stop.is_set():
                    return None
                latest = self._ledger.last_closed.sequence
            if latest > after:
                return latest
            if gone():
                return None

    def has_waiter(self, tx_hash: str) -> bool:
        """Whether a POST /transactions is waiting for this transaction's ledger."""
        with self._lock:
            return bool(self._waiters.get(tx_hash))

    @property
    def pending_count(self) -> int:
        with self._lock:
            return len(self._ledger.queue)

    @property
    def latest_ledger(self) -> int:
        with self._lock:
            return self._ledger.last_closed.sequence

    def _close_loop(self) -> None:
        while not self._stop.wait(self.close_interval_s):
            if self.faults.ledgers_halted:
                continue
            try:
                with self._lock:
                    # Close times are whole seconds that must grow, so an empty ledger
                    # waits for the clock; pending transactions do not wait.
                    due = bool(self._ledger.queue) or (
                        self.clock.now() > self._ledger.last_closed.closed_at
                    )
                    if due:
                        self.close_ledger()
            except Exception:  # the timer must survive a bug in one close
                log.exception("closing a ledger failed")

    # -- reading -----------------------------------------------------------------------

    def read(self, ledgers_behind: int | None = None) -> _ReadGuard:
        """`with node.read() as ledger:` gives a consistent view for building responses;
        with `ledgers_behind`, the view of a server that many ledgers behind."""
        return _ReadGuard(self, ledgers_behind)

    # -- submission --------------------------------------------------------------------

    def _upper_offset(self) -> int:
        """stellar-core getUpperBoundCloseTimeOffset: the next close may be up to two
        close intervals away, plus however far the clock already is past the last close."""
        drift = max(0, self.clock.now() - self._ledger.last_closed.closed_at)
        return 2 * math.ceil(self.close_interval_s) + drift

    def submit(self, envelope_b64: str, *, honour_faults: bool = True) -> Reply:
        """Horizon's POST /transactions, minus the HTTP."""
        if honour_faults:
            rejection = self.faults.take_rejection()
            if rejection is not None:
                return self._injected_rejection(envelope_b64, rejection.code)
        try:
            frame = parse_envelope(envelope_b64, self._ledger.network_id)
        except ValueError:
            return Reply.of(problems.transaction_malformed(envelope_b64))

        with self._lock:
            done = self._ledger.transactions.get(frame.id_hex)
            if done is not None:
                return self._answer(done)
            add = self._ledger.try_add(frame, self._upper_offset())
            self._release(add.evicted)
            if add.status == AddStatus.ERROR:
                assert add.result is not None
                return Reply.of(problems.transaction_failed(envelope_b64, add.result))
            # PENDING and DUPLICATE wait for the ledger; so does TRY_AGAIN_LATER (another
            # transaction of this account is queued): Horizon waits for it too, and
            # answers 504 unless the transaction shows up in a ledger in time.
            waiter = _Waiter()
            self._waiters.setdefault(frame.id_hex, []).append(waiter)

        waiter.done.wait(self.submission_timeout_s)
        with self._lock:
            if not waiter.done.is_set():
                self._forget(frame.id_hex, waiter)
        if waiter.refusal is not None:
            return Reply.of(problems.transaction_failed(envelope_b64, waiter.refusal))
        if waiter.record is None:
            return Reply.of(problems.submission_timeout(frame.id_hex, envelope_b64))
        after = self.faults.take_after_apply() if honour_faults else AfterApply.ANSWER
        if after == AfterApply.DROP:
            return Reply(0, {}, drop=True)
        if after == AfterApply.TIMEOUT:
            return Reply.of(problems.submission_timeout(frame.id_hex, envelope_b64))
        return self._answer(waiter.record)

    def submit_async(self, envelope_b64: str, *, honour_faults: bool = True) -> Reply:
        """Horizon's POST /transactions_async, minus the HTTP: stellar-core's verdict on
        queueing the transaction, at once. Faults: a rejection replaces the verdict (a
        result code is an ERROR, an HTTP status its problem); a dropped response applies
        once the transaction is in the queue (PENDING or DUPLICATE). A 504 after apply
        is the synchronous route's alone: this one never waits for a ledger."""
        rejection = self.faults.take_rejection() if honour_faults else None
        if rejection is not None and isinstance(rejection.code, int):
            return Reply.of(problems.injected(rejection.code))
        try:
            frame = parse_envelope(envelope_b64, self._ledger.network_id)
        except ValueError:
            return Reply.of(problems.transaction_malformed(envelope_b64))
        if rejection is not None:
            result = self._rejection_result(str(rejection.code))
            return Reply.async_status(AddStatus.ERROR, frame.id_hex, result)
        with self._lock:
            add = self._ledger.try_add(frame, self._upper_offset())
            self._release(add.evicted)
        queued = add.status in (AddStatus.PENDING, AddStatus.DUPLICATE)
        if queued and honour_faults and self.faults.take_drop():
            return Reply(0, {}, drop=True)
        return Reply.async_status(add.status, frame.id_hex, add.result)

    def _forget(self, tx_hash: str, waiter: _Waiter) -> None:
        waiters = self._waiters.get(tx_hash, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self._waiters.pop(tx_hash, None)

    def _answer(self, record: TxRecord) -> Reply:
        if record.successful:
            return Reply(200, horizon.transaction(self.base_url, record))
        result = x.TransactionResult.from_xdr(record.result_xdr)
        return Reply.of(problems.transaction_failed(record.envelope_xdr, result))

    def _injected_rejection(self, envelope_b64: str, code: str | int) -> Reply:
        if isinstance(code, int):
            return Reply.of(problems.injected(code))
        return Reply.of(problems.transaction_failed(envelope_b64, self._rejection_result(code)))

    def _rejection_result(self, code: str) -> x.TransactionResult:
        from adapters.localnet.stellar.codes import TX_CODES_BY_NAME

        return tx_result(self._ledger.base_fee, TX_CODES_BY_NAME[code])

    # -- friendbot ---------------------------------------------------------------------

    def friendbot(self, address: str) -> Reply:
        """Fund `address` with 10,000 XLM from the root account, as testnet's friendbot does."""
        if not StrKey.is_valid_ed25519_public_key(address):
            return Reply.of(problems.bad_request("addr", "invalid address"))
        # One friendbot transaction at a time: the root account has one sequence.
        with self._friendbot_lock:
            with self._lock:
                root = self._ledger.entries.accounts[self.root_keypair.public_key]
            envelope = (
                TransactionBuilder(
                    SdkAccount(self.root_keypair.public_key, root.seq_num),
                    self.network_passphrase,
                    base_fee=self._ledger.base_fee,
                )
                .append_create_account_op(address, _xlm(FRIENDBOT_STARTING_BALANCE_STROOPS))
                .add_time_bounds(0, 0)
                .build()
            )
            envelope.sign(self.root_keypair)
            return self.submit(envelope.to_xdr(), honour_faults=False)


def _xlm(stroops: int) -> str:
    from adapters.localnet.stellar.amounts import format_stroops

    return format_stroops(stroops)


class _ReadGuard:
    def __init__(self, node: StellarNode, ledgers_behind: int | None) -> None:
        self._node = node
        self._behind = ledgers_behind

    def __enter__(self) -> LocalLedger:
        self._node._lock.acquire()
        if self._behind is None:
            return self._node._ledger
        return self._node._ledger.stale_view(self._behind)

    def __exit__(self, *exc: object) -> None:
        self._node._lock.release()


def run_node(
    port: int,
    close_interval_s: float,
    data_dir: Path | None,
    max_tx_set_size: int | None = MAX_TX_SET_SIZE,
) -> None:
    """Run a node until interrupted (Ctrl-C): `settle node stellar`."""
    node = StellarNode(
        close_interval_s=close_interval_s, data_dir=data_dir, max_tx_set_size=max_tx_set_size
    )
    url = node.start(port=port)
    log.info(
        "local Stellar network (Horizon API) at %s, root %s", url, node.root_keypair.public_key
    )
    print(f"Horizon: {url}\nnetwork passphrase: {node.network_passphrase}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()
