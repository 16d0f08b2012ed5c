"""The bare-library baseline of ``bench/dvp.py``: DVPs the way a user writes them with
xrpl-py and stellar-sdk alone, no database and no engine.

One process of this module is one bare client (``bench/dvp.py --mode bare|both`` starts
1 or K of them, beside the engine's K workers). Per DVP it sends exactly the ledger
transactions the engine's adapters send, in the engine's order (each stage starts
once the one before is validated, as ``settlement.dvp.protocol`` orders them):

1. Stellar: the buyer's CreateClaimableBalance of the USDC, the agent claimable at once,
   the buyer from T_cancel on (source: a channel account, the buyer the operation's
   source; time bounds [latest close, +60 s]; fee bid 2 x the p90 of fee_stats, at
   least the base fee, as ``adapters.stellar.fees`` bids);
2. XRPL: the seller's EscrowCreate of the bond, Condition = PREIMAGE-SHA-256 of a fresh
   32-byte secret, CancelAfter = T_cancel, on a Ticket, LastLedgerSequence = validated
   + 20, fee = the open ledger's (at least the reference fee);
3. Stellar: the agent's ClaimClaimableBalance (on a channel);
4. XRPL: the agent's EscrowFinish with the fulfillment (on a Ticket; 33 reference fees
   plus one per 16 bytes of fulfillment, as rippled charges);
5. Stellar: the agent's Payment of the USDC to the seller (on a channel).

No memos (the engine's adapters add none to legs). Each transaction is submitted once
(Horizon's POST /transactions_async, rippled's ``submit``) and then polled by hash once
per new ledger of its chain, until it is validated or expired (an expired one is signed
anew, as the engine does). One watcher thread per chain reads the latest ledger (and,
per new ledger, the fees), paced by the closes it sees: after a new ledger it sleeps
most of a close interval, then reads every ``HEAD_POLL_S`` until the next (a few reads
per close, as the engine looks again just after the next close); the DVP threads
wait on it.

What a competent user would do and the engine also does: a kept-alive HTTP client
(httpx) per server, shared by the process's threads; xrpl-py's own ``sign`` and
binary codec, stellar-sdk's builder and signing; Tickets for the two XRPL signers, channel
accounts for Stellar. This client partitions them among the K processes (ticket number
and channel index modulo K) and tracks each channel's sequence number in memory
(reloaded after a failure); process 0 keeps both accounts' Tickets stocked.

Protocol with the parent, one line each: the parent writes the configuration (JSON);
the client sets up (imports, HTTP clients, channel sequences, first heads, tickets)
and prints ``ready``; the parent reads CPU clocks and writes ``go``; the client runs
``seconds`` of closed loop with ``in_flight`` DVP threads, waits up to ``drain_s`` for
those open, prints its result (JSON) and idles until the parent writes ``exit``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from stellar_sdk import (
    Account,
    Asset,
    Claimant,
    ClaimPredicate,
    Keypair,
    TransactionBuilder,
    TransactionEnvelope,
)
from xrpl.core.binarycodec import encode
from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.transactions import EscrowCreate, EscrowFinish, TicketCreate, Transaction
from xrpl.transaction import sign
from xrpl.wallet import Wallet

#: how often each chain's watcher reads the latest ledger when a close is due
HEAD_POLL_S = 0.05
#: the share of a close interval a watcher sleeps after seeing a new ledger
SLEEP_SHARE = 0.8
#: an XRPL transaction may apply up to this many ledgers after the validated one
LEDGER_WINDOW = 20
#: a Stellar transaction's time bounds: [latest close, + this]
STELLAR_WINDOW_S = 60
#: T_cancel: this long after the ledger's time when the DVP starts
CANCEL_AFTER_S = 300
RIPPLE_EPOCH_UNIX = 946_684_800
MAX_TICKETS = 250
#: signatures of one transaction before the DVP is given up
ATTEMPTS = 5


class DvpFailed(Exception):
    """A transaction of the DVP was refused for good; the DVP is given up."""


@dataclass
class XrplHead:
    index: int = 0
    close_time: int = 0  # Ripple seconds
    fee_drops: int = 10  # per reference fee unit


@dataclass
class StellarHead:
    sequence: int = 0
    closed_at: int = 0  # Unix seconds
    bid: int = 100  # stroops per operation


class Watch:
    """The latest ledger of one chain, read every ``HEAD_POLL_S`` by a thread of its own;
    DVP threads wait on it for the next ledger."""

    def __init__(self, read: Callable[[Any], Any], head: Any) -> None:
        self._read = read
        self.head = head
        self._changed = threading.Condition()
        self.stop = threading.Event()

    def index(self) -> int:
        return int(getattr(self.head, "index", 0) or getattr(self.head, "sequence", 0))

    def run(self) -> None:
        """Read the head; after a new ledger, sleep most of a close interval (learned
        from the closes seen) before reading again, then read every ``HEAD_POLL_S``
        until the next one shows: a few reads per close, found within a poll of it."""
        interval_s, changed_at = 1.0, None
        while not self.stop.is_set():
            try:
                fresh = self._read(self.head)
            except (httpx.HTTPError, KeyError, ValueError):
                fresh = None
            if fresh is None:
                self.stop.wait(HEAD_POLL_S)
                continue
            now = time.monotonic()
            if changed_at is not None:
                seen = min(max(now - changed_at, 0.2), 10.0)
                interval_s = 0.8 * interval_s + 0.2 * seen
            changed_at = now
            with self._changed:
                self.head = fresh
                self._changed.notify_all()
            self.stop.wait(max(HEAD_POLL_S, SLEEP_SHARE * interval_s))

    def wait_past(self, index: int, timeout: float = 30.0) -> None:
        """Return once a ledger after ``index`` is seen (or on stop, or the timeout)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.index() <= index and not self.stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)


class TicketPool:
    """This process's share of one account's Tickets: numbers ``index`` modulo
    ``count``; a ticket taken is in use until its transaction is validated (spent) or
    expired (given back)."""

    def __init__(self, account: str, index: int, count: int) -> None:
        self.account = account
        self._index, self._count = index, count
        self._free: deque[int] = deque()
        self._in_use: set[int] = set()
        self._spent: set[int] = set()
        self._cond = threading.Condition()

    def take(self, stop: threading.Event) -> int | None:
        with self._cond:
            while not self._free:
                if stop.is_set():
                    return None
                self._cond.wait(0.2)
            ticket = self._free.popleft()
            self._in_use.add(ticket)
            return ticket

    def done(self, ticket: int, *, spent: bool) -> None:
        with self._cond:
            self._in_use.discard(ticket)
            if spent:
                self._spent.add(ticket)
            else:
                self._free.append(ticket)
                self._cond.notify()

    def low(self, water: int) -> bool:
        with self._cond:
            return len(self._free) < water

    def offer(self, on_ledger: list[int]) -> None:
        """Tickets the validated ledger holds: this process's new ones become free."""
        with self._cond:
            known = self._in_use | self._spent | set(self._free)
            for ticket in on_ledger:
                if ticket % self._count == self._index and ticket not in known:
                    self._free.append(ticket)
            self._cond.notify_all()


@dataclass
class Channel:
    keypair: Keypair
    account: Account


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    last_done: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    resigned: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class BareClient:
    """One process's DVPs over both ledgers, with the libraries alone."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        # one kept-alive client per server: httpcore scans its pool on every request
        size = cfg["in_flight"] + 4
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self.xrpl_http = httpx.Client(timeout=30.0, limits=limits)
        self.http = httpx.Client(timeout=30.0, limits=limits)  # Horizon
        self.xrpl_url: str = cfg["xrpl_url"]
        self.horizon: str = cfg["horizon_url"].rstrip("/")
        self.passphrase: str = cfg["passphrase"]
        self.seller = Wallet.from_seed(cfg["seller_seed"])
        self.agent_x = Wallet.from_seed(cfg["agent_seed"])
        self.buyer_x: str = cfg["buyer_xrpl"]
        self.bond = IssuedCurrencyAmount(
            currency=cfg["bond"][0], issuer=cfg["bond"][1], value=cfg["bond_units"]
        )
        self.usdc = Asset(cfg["usdc"][0], cfg["usdc"][1])
        self.price: str = cfg["price"]
        self.buyers = [Keypair.from_secret(s) for s in cfg["buyers"]]
        self.agent_s = Keypair.from_secret(cfg["agent_stellar"])
        self.seller_s: str = cfg["seller_stellar"]
        index, count = cfg["index"], cfg["count"]
        self.tickets = {
            w.classic_address: TicketPool(w.classic_address, index, count)
            for w in (self.seller, self.agent_x)
        }
        self.channels: deque[Channel] = deque()
        self.channels_free = threading.Condition()
        for secret in cfg["channels"][index::count]:
            keypair = Keypair.from_secret(secret)
            self.channels.append(Channel(keypair, self._load(keypair.public_key)))
        self.xrpl = Watch(self._read_xrpl, XrplHead())
        self.stellar = Watch(self._read_stellar, StellarHead())
        self.stop = threading.Event()
        self.stats = Stats()

    # --- heads ----------------------------------------------------------------------

    def _rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = self.xrpl_http.post(
            self.xrpl_url, json={"method": method, "params": [params]}
        ).json()
        result: dict[str, Any] = body["result"]
        return result

    def _read_xrpl(self, head: XrplHead) -> XrplHead | None:
        answer = self._rpc("ledger", {"ledger_index": "validated"})
        index = int(answer["ledger_index"])
        if index == head.index:
            return None
        drops = self._rpc("fee", {})["drops"]
        per_unit = max(int(drops["base_fee"]), min(int(drops["open_ledger_fee"]), 1_000))
        return XrplHead(index, int(answer["ledger"]["close_time"]), per_unit)

    def _read_stellar(self, head: StellarHead) -> StellarHead | None:
        page = self.http.get(f"{self.horizon}/ledgers", params={"order": "desc", "limit": 1})
        record = page.json()["_embedded"]["records"][0]
        if int(record["sequence"]) == head.sequence:
            return None
        stats = self.http.get(f"{self.horizon}/fee_stats").json()
        base = int(record["base_fee_in_stroops"])
        p90 = int(stats["fee_charged"]["p90"])
        bid = min(max(base, int(stats["last_ledger_base_fee"]), 2 * p90), 10_000)
        closed = datetime.fromisoformat(record["closed_at"].replace("Z", "+00:00"))
        return StellarHead(int(record["sequence"]), int(closed.timestamp()), bid)

    def _load(self, account_id: str) -> Account:
        body = self.http.get(f"{self.horizon}/accounts/{account_id}").json()
        return Account(account_id, int(body["sequence"]))

    # --- tickets ----------------------------------------------------------------------

    def _ledger_tickets(self, account: str) -> list[int]:
        found: list[int] = []
        marker = None
        while True:
            params: dict[str, Any] = {
                "account": account,
                "type": "ticket",
                "ledger_index": "validated",
                "limit": 400,
            }
            if marker is not None:
                params["marker"] = marker
            answer = self._rpc("account_objects", params)
            found += [int(o["TicketSequence"]) for o in answer["account_objects"]]
            marker = answer.get("marker")
            if marker is None:
                return found

    def keep_tickets(self) -> None:
        """Refresh this process's pools (when low) and, in process 0, top the accounts'
        Tickets up to the target, as the engine's workers do."""
        target = self.cfg["tickets"]
        keeper = self.cfg["index"] == 0
        while not self.stop.is_set():
            for account, pool in self.tickets.items():
                if not keeper and not pool.low(self.cfg["in_flight"]):
                    continue
                try:
                    held = self._ledger_tickets(account)
                    pool.offer(held)
                    if keeper and len(held) < target * 3 // 4:
                        self._ticket_create(account, min(target, MAX_TICKETS) - len(held))
                except (httpx.HTTPError, KeyError, ValueError, DvpFailed) as exc:
                    self.stats.failures[f"tickets {type(exc).__name__}"] += 1
            self.stop.wait(1.0)

    def _ticket_create(self, account: str, count: int) -> None:
        wallet = self.seller if account == self.seller.classic_address else self.agent_x
        sequence = int(
            self._rpc("account_info", {"account": account, "ledger_index": "current"})[
                "account_data"
            ]["Sequence"]
        )
        head = self.xrpl.head
        tx = TicketCreate(
            account=account,
            ticket_count=count,
            sequence=sequence,
            fee=str(head.fee_drops),
            last_ledger_sequence=head.index + LEDGER_WINDOW,
        )
        self._xrpl_submit_and_wait(wallet, tx, head.index)

    # --- XRPL -------------------------------------------------------------------------

    def _xrpl(self, wallet: Wallet, make: Callable[[int, XrplHead], Transaction]) -> None:
        """Sign ``make(ticket, head)`` on a ticket of ``wallet``, submit it, wait for a
        validated ledger to hold it; sign again on expiry. Raises ``DvpFailed``."""
        pool = self.tickets[wallet.classic_address]
        for _ in range(ATTEMPTS):
            ticket = pool.take(self.stop)
            if ticket is None:
                raise DvpFailed("stopped waiting for a ticket")
            head = self.xrpl.head
            try:
                applied = self._xrpl_submit_and_wait(wallet, make(ticket, head), head.index)
            except DvpFailed:
                pool.done(ticket, spent=True)  # refused in a ledger: the ticket is used
                raise
            except httpx.HTTPError as exc:
                pool.done(ticket, spent=False)
                raise DvpFailed(f"XRPL: {exc!r}") from exc
            pool.done(ticket, spent=applied)
            if applied:
                return
            with self.stats.lock:
                self.stats.resigned["xrpl expired"] += 1
        raise DvpFailed(f"XRPL: {ATTEMPTS} attempts expired")

    def _xrpl_submit_and_wait(self, wallet: Wallet, tx: Transaction, signed_after: int) -> bool:
        """True once applied (tesSUCCESS), False if expired; ``DvpFailed`` otherwise."""
        signed = sign(tx, wallet)
        blob = encode(signed.to_xrpl())
        tx_hash = hashlib.sha512(b"TXN\x00" + bytes.fromhex(blob)).digest()[:32].hex().upper()
        answer = self._rpc("submit", {"tx_blob": blob})
        code = str(answer.get("engine_result", answer.get("error")))
        # tes/ter: queued; tec: applies as a failure, read below; tel: expires unapplied
        if code.startswith(("tem", "tef")) or "engine_result" not in answer:
            raise DvpFailed(f"XRPL {tx.transaction_type} refused: {code}")
        last = tx.last_ledger_sequence or 0
        seen = signed_after
        while True:
            self.xrpl.wait_past(seen)
            seen = self.xrpl.index()
            found = self._rpc(
                "tx", {"transaction": tx_hash, "min_ledger": signed_after, "max_ledger": last}
            )
            if found.get("validated") is True:
                result = str(found["meta"]["TransactionResult"])
                if result != "tesSUCCESS":
                    raise DvpFailed(f"XRPL {tx.transaction_type}: {result}")
                return True
            if found.get("error") == "txnNotFound" and found.get("searched_all") is True:
                return False
            if self.stop.is_set() and self.cfg.get("abort"):
                raise DvpFailed("aborted")

    # --- Stellar ----------------------------------------------------------------------

    def _take_channel(self) -> Channel | None:
        with self.channels_free:
            while not self.channels:
                if self.stop.is_set() and self.cfg.get("abort"):
                    return None
                self.channels_free.wait(0.2)
            return self.channels.popleft()

    def _give_channel(self, channel: Channel) -> None:
        with self.channels_free:
            self.channels.append(channel)
            self.channels_free.notify()

    def _stellar(
        self, signer: Keypair, operations: Callable[[TransactionBuilder, str], object]
    ) -> TransactionEnvelope:
        """A transaction of ``operations`` (``signer`` their source) on a channel,
        submitted and waited for; signed anew if it expires or is refused before any
        ledger. Raises ``DvpFailed``."""
        for _ in range(ATTEMPTS):
            channel = self._take_channel()
            if channel is None:
                raise DvpFailed("aborted")
            try:
                envelope = self._stellar_once(channel, signer, operations)
            except httpx.HTTPError as exc:
                channel.account = self._load(channel.keypair.public_key)
                raise DvpFailed(f"Stellar: {exc!r}") from exc
            finally:
                self._give_channel(channel)
            if envelope is not None:
                return envelope
            with self.stats.lock:
                self.stats.resigned["stellar expired or refused"] += 1
        raise DvpFailed(f"Stellar: {ATTEMPTS} attempts expired or refused")

    def _stellar_once(
        self,
        channel: Channel,
        signer: Keypair,
        operations: Callable[[TransactionBuilder, str], object],
    ) -> TransactionEnvelope | None:
        head = self.stellar.head
        builder = TransactionBuilder(channel.account, self.passphrase, base_fee=head.bid)
        builder.add_time_bounds(head.closed_at, head.closed_at + STELLAR_WINDOW_S)
        operations(builder, signer.public_key)
        envelope = builder.build()  # takes the channel's next sequence number
        envelope.sign(signer)
        envelope.sign(channel.keypair)
        tx_hash = envelope.hash_hex()
        reply = self.http.post(f"{self.horizon}/transactions_async", data={"tx": envelope.to_xdr()})
        status = reply.json().get("tx_status")
        if status not in ("PENDING", "DUPLICATE"):
            channel.account = self._load(channel.keypair.public_key)
            return None
        seen = head.sequence
        while True:
            self.stellar.wait_past(seen)
            seen = self.stellar.index()
            found = self.http.get(f"{self.horizon}/transactions/{tx_hash}")
            if found.status_code == 200:
                if found.json().get("successful") is not True:
                    raise DvpFailed(f"Stellar transaction {tx_hash} failed in its ledger")
                return envelope
            if self.stellar.head.closed_at > head.closed_at + STELLAR_WINDOW_S + 1:
                channel.account = self._load(channel.keypair.public_key)
                return None
            if self.stop.is_set() and self.cfg.get("abort"):
                raise DvpFailed("aborted")

    # --- one DVP ----------------------------------------------------------------------

    def dvp(self, n: int) -> None:
        """Lock both legs, claim, finish the escrow, pay: five validated transactions."""
        secret = os.urandom(32)
        fulfillment = ("A0228020" + secret.hex()).upper()
        condition = ("A0258020" + hashlib.sha256(secret).hexdigest() + "810120").upper()
        buyer = self.buyers[n % len(self.buyers)]
        cancel_unix = self.stellar.head.closed_at + CANCEL_AFTER_S
        claimants = [
            Claimant(self.agent_s.public_key, ClaimPredicate.predicate_unconditional()),
            Claimant(
                buyer.public_key,
                ClaimPredicate.predicate_not(
                    ClaimPredicate.predicate_before_absolute_time(cancel_unix)
                ),
            ),
        ]
        lock = self._stellar(
            buyer,
            lambda b, src: b.append_create_claimable_balance_op(
                self.usdc, self.price, claimants, source=src
            ),
        )
        balance_id = lock.transaction.get_claimable_balance_id(0)
        escrow_ticket: list[int] = []

        def escrow(ticket: int, head: XrplHead) -> Transaction:
            escrow_ticket[:] = [ticket]
            return EscrowCreate(
                account=self.seller.classic_address,
                destination=self.buyer_x,
                amount=self.bond,
                condition=condition,
                cancel_after=head.close_time + CANCEL_AFTER_S,
                sequence=0,
                ticket_sequence=ticket,
                fee=str(head.fee_drops),
                last_ledger_sequence=head.index + LEDGER_WINDOW,
            )

        self._xrpl(self.seller, escrow)
        self._stellar(
            self.agent_s, lambda b, src: b.append_claim_claimable_balance_op(balance_id, source=src)
        )
        units = 33 + len(fulfillment) // 2 // 16
        self._xrpl(
            self.agent_x,
            lambda ticket, head: EscrowFinish(
                account=self.agent_x.classic_address,
                owner=self.seller.classic_address,
                offer_sequence=escrow_ticket[0],
                condition=condition,
                fulfillment=fulfillment,
                sequence=0,
                ticket_sequence=ticket,
                fee=str(head.fee_drops * units),
                last_ledger_sequence=head.index + LEDGER_WINDOW,
            ),
        )
        self._stellar(
            self.agent_s,
            lambda b, src: b.append_payment_op(self.seller_s, self.usdc, self.price, source=src),
        )

    def loop(self, first: int, step: int) -> None:
        """DVPs one after another until stop: one of ``in_flight`` such loops."""
        n = first
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.dvp(n)
            except DvpFailed as exc:
                with self.stats.lock:
                    self.stats.failures[str(exc)[:80]] += 1
            else:
                with self.stats.lock:
                    self.stats.latencies.append(time.monotonic() - started)
                    self.stats.last_done = time.time()
            n += step

    def start_watchers(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self.xrpl.run, daemon=True),
            threading.Thread(target=self.stellar.run, daemon=True),
            threading.Thread(target=self.keep_tickets, daemon=True),
        ]
        for t in threads:
            t.start()
        self.xrpl.wait_past(0)
        self.stellar.wait_past(0)
        return threads


def serve() -> None:
    """The child's side of the protocol in the module docstring."""
    cfg = json.loads(sys.stdin.readline())
    client = BareClient(cfg)
    client.start_watchers()
    deadline = time.monotonic() + 60
    while any(p.low(1) for p in client.tickets.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    go = time.time()
    in_flight, index, count = cfg["in_flight"], cfg["index"], cfg["count"]
    loops = [
        threading.Thread(
            target=client.loop, args=(index + count * k, count * in_flight), daemon=True
        )
        for k in range(in_flight)
    ]
    for t in loops:
        t.start()
    time.sleep(cfg["seconds"])
    client.stop.set()  # no new DVP; the open ones finish
    until = time.monotonic() + cfg["drain_s"]
    for t in loops:
        t.join(max(0.0, until - time.monotonic()))
    cfg["abort"] = True
    client.xrpl.stop.set()
    client.stellar.stop.set()
    stats = client.stats
    with stats.lock:
        result = {
            "go": go,
            "latencies": stats.latencies,
            "last_done": stats.last_done,
            "failures": dict(stats.failures),
            "resigned": dict(stats.resigned),
            "open": sum(1 for t in loops if t.is_alive()),
        }
    print(json.dumps(result), flush=True)
    sys.stdin.readline()  # "exit": the parent has read this process's CPU clock


if __name__ == "__main__":
    serve()
