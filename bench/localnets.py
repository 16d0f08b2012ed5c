"""Throughput of the two local networks, and the adapters' lock+commit latency.

In one run, side by side (figures, not a pass/fail test: the machine is shared and
noisy, and both nodes run in this process, so client and node share one GIL):

1. XRPL node: ed25519 XRP Payments applied per second, submitted over rippled's
   JSON-RPC (``submit`` with a tx_blob signed locally by xrpl-py, one persistent
   httpx client), from ONE account (consecutive Sequence numbers, one submitting
   thread so they arrive in order) and through Tickets spread over 32 accounts
   (TicketCreate first, then Payments with TicketSequence, from 4 threads). Ledgers
   close on demand (``close_interval_s=0``; ``ledger_accept`` over JSON-RPC after
   every batch of submits) and on a 1 s timer. Blobs are signed before the clock
   starts (in worker processes, by xrpl-py).
   The window runs from the first submit to the moment the last counted transaction
   is in a validated ledger; only transactions found afterwards in validated ledgers
   with tesSUCCESS are counted, and the destinations' balances must have grown by
   exactly the counted payments.
2. Stellar node: Payment operations applied per second through Horizon
   (``POST /transactions``, which answers once the ledger holding the transaction
   has closed). Many accounts each send one transaction of 100 Payment operations
   per ledger (stellar-core queues one transaction per source account). Ledgers
   close on demand (``close_ledger()`` once every account's transaction is queued)
   and on a 1 s timer. Only operations of answers with ``successful: true`` count,
   and the destinations' balances must have grown by exactly those operations.
3. Adapter lock+commit latency with both nodes closing every 1 s: for each chain,
   wall time of prepare_lock -> submit -> status until Applied, then prepare_commit
   -> submit -> status until Applied, through the real adapters (``XrplChain``,
   ``StellarChain``) with an ``InMemoryKeystore``, legs as the DVP demo settles them
   (the bond token on XRPL, USDC on Stellar). Settlements run one after another per
   chain, the two chains at the same time; balances are checked afterwards.
4. Peak RSS of this process (the signing workers are separate processes).

    python bench/localnets.py [--seconds 6] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import stellar_sdk
from stellar_sdk import Account as SdkAccount
from stellar_sdk import Asset as SdkAsset
from stellar_sdk import Keypair, TransactionBuilder
from xrpl.constants import CryptoAlgorithm
from xrpl.core.binarycodec import decode, encode
from xrpl.models.transactions import Payment, TicketCreate
from xrpl.transaction import sign
from xrpl.wallet import Wallet

from adapters.chain import Applied, Chain, ChainName, Leg, LockTerms, Outcome, SignedSubmission
from adapters.conditions import HashLock
from adapters.localnet.stellar import StellarNode
from adapters.localnet.xrpl import XrplNode
from adapters.localnet.xrpl.apply import signature_failure
from adapters.localnet.xrpl.protocol import GENESIS_SEED
from settlement import bootstrap
from settlement.demo.world import LocalWorld

XRPL_FEE_DROPS = 10
XRPL_PAYMENT_DROPS = 1_000
XRPL_TICKET_ACCOUNTS = 32
XRPL_TICKET_THREADS = 4
XRPL_MAX_TICKETS_PER_ACCOUNT = 250  # rippled's limit on tickets an account may hold
XRPL_BATCH_PER_LEDGER = 200  # on demand: ledger_accept after this many submits
STELLAR_OPS_PER_TX = 100  # stellar-core's MAX_OPS_PER_TX
STELLAR_PAYMENT_STROOPS = 100
STELLAR_DESTINATIONS = 4
STROOPS_PER_XLM = 10_000_000
POLL_S = 0.01


class BenchFailure(RuntimeError):
    """The run did not produce a figure that can be trusted; the message says why."""


# --- small helpers ---------------------------------------------------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile_ms(values_s: list[float], q: float) -> float:
    ordered = sorted(values_s)
    return ordered[min(len(ordered) - 1, max(0, round(len(ordered) * q + 0.5) - 1))] * 1000


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchFailure(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_S)


def close_label(close_interval_s: float) -> str:
    return "on demand" if close_interval_s == 0 else f"{close_interval_s:g} s timer"


# --- XRPL: signing in worker processes ----------------------------------------------------


@dataclass(frozen=True)
class PaymentBatch:
    """Payments one ed25519 account signs: by Sequence, or by TicketSequence."""

    seed: str
    destination: str
    last_ledger_sequence: int
    sequences: tuple[int, ...] = ()
    tickets: tuple[int, ...] = ()


def sign_batch(batch: PaymentBatch) -> list[tuple[str, str]]:
    """(hash, blob) per payment, in the order given. Runs in a worker process."""
    wallet = Wallet.from_seed(batch.seed, algorithm=CryptoAlgorithm.ED25519)
    common = {
        "account": wallet.classic_address,
        "destination": batch.destination,
        "amount": str(XRPL_PAYMENT_DROPS),
        "fee": str(XRPL_FEE_DROPS),
        "last_ledger_sequence": batch.last_ledger_sequence,
    }
    out = []
    for sequence in batch.sequences:
        signed = sign(Payment(**common, sequence=sequence), wallet)
        out.append((signed.get_hash(), encode(signed.to_xrpl())))
    for ticket in batch.tickets:
        signed = sign(Payment(**common, sequence=0, ticket_sequence=ticket), wallet)
        out.append((signed.get_hash(), encode(signed.to_xrpl())))
    return out


# --- XRPL: the client side ----------------------------------------------------------------


class XrplClient:
    """rippled JSON-RPC over one persistent httpx client (thread-safe)."""

    def __init__(self, url: str, connections: int) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._http = httpx.Client(base_url=url, timeout=30.0, limits=limits)

    def close(self) -> None:
        self._http.close()

    def rpc(self, method: str, **params: Any) -> dict[str, Any]:
        answer = self._http.post("/", json={"method": method, "params": [params]})
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()["result"]
        return result

    def validated_index(self) -> int:
        return int(self.rpc("ledger_closed")["ledger_index"])

    def current_index(self) -> int:
        return int(self.rpc("ledger_current")["ledger_current_index"])

    def balance_drops(self, address: str) -> int:
        data = self.rpc("account_info", account=address, ledger_index="validated")
        return int(data["account_data"]["Balance"])

    def next_sequence(self, address: str) -> int:
        data = self.rpc("account_info", account=address, ledger_index="current")
        return int(data["account_data"]["Sequence"])

    def results_in(self, first: int, last: int) -> tuple[dict[str, str], dict[int, int]]:
        """Result code by hash of every transaction in validated ledgers first..last,
        and how many transactions each ledger holds."""
        codes: dict[str, str] = {}
        per_ledger: dict[int, int] = {}
        for index in range(first, last + 1):
            answer = self.rpc(
                "ledger", ledger_index=index, transactions=True, expand=True, api_version=2
            )
            ledger = answer["ledger"]
            if answer.get("validated") is not True:
                raise BenchFailure(f"ledger {index} is not validated")
            txs = ledger.get("transactions", [])
            per_ledger[index] = len(txs)
            for tx in txs:
                codes[tx["hash"]] = tx["meta"]["TransactionResult"]
        return codes, per_ledger


@dataclass
class XrplRun:
    label: str
    close: str
    threads: int
    submitted: int
    applied: int
    seconds: float
    ledgers: int
    max_per_ledger: int
    refused: dict[str, int]
    submit_s: float

    @property
    def tx_per_s(self) -> float:
        return self.applied / self.seconds


class XrplBench:
    """One XRPL node with an ed25519 sender, 32 ticket accounts and two destinations."""

    def __init__(self, close_interval_s: float, pool: Any) -> None:
        self.close_interval_s = close_interval_s
        self.pool = pool
        self.node = XrplNode(close_interval_s=close_interval_s)
        self.client = XrplClient(self.node.start(port=0), connections=XRPL_TICKET_THREADS + 4)
        self.genesis = Wallet.from_seed(GENESIS_SEED, algorithm=CryptoAlgorithm.SECP256K1)

    def stop(self) -> None:
        self.client.close()
        self.node.stop()

    # set-up, over the wire ------------------------------------------------------------

    def settle(self, blobs: list[tuple[str, str]]) -> None:
        """Submit set-up transactions; return once all are validated with tesSUCCESS."""
        for tx_hash, blob in blobs:
            answer = self.client.rpc("submit", tx_blob=blob)
            if answer.get("engine_result") != "tesSUCCESS":
                raise BenchFailure(f"set-up transaction {tx_hash} refused: {answer}")
        if self.close_interval_s == 0:
            self.client.rpc("ledger_accept")
        for tx_hash, _ in blobs:
            wait_until(
                lambda h=tx_hash: self.client.rpc("tx", transaction=h).get("validated") is True,
                10,
                f"set-up transaction {tx_hash}",
            )
            code = self.client.rpc("tx", transaction=tx_hash)["meta"]["TransactionResult"]
            if code != "tesSUCCESS":
                raise BenchFailure(f"set-up transaction {tx_hash} ended {code}")

    def fund(self, addresses: list[str], xrp: int) -> None:
        sequence = self.client.next_sequence(self.genesis.classic_address)
        last = self.client.current_index() + 50
        blobs = []
        for offset, address in enumerate(addresses):
            payment = Payment(
                account=self.genesis.classic_address,
                destination=address,
                amount=str(xrp * 1_000_000),
                fee=str(XRPL_FEE_DROPS),
                sequence=sequence + offset,
                last_ledger_sequence=last,
            )
            signed = sign(payment, self.genesis)
            blobs.append((signed.get_hash(), encode(signed.to_xrpl())))
        self.settle(blobs)

    def create_tickets(self, wallets: list[Wallet], count: int) -> dict[str, list[int]]:
        """TicketCreate of ``count`` tickets on every wallet; the ticket numbers."""
        last = self.client.current_index() + 50
        blobs, tickets = [], {}
        for wallet in wallets:
            sequence = self.client.next_sequence(wallet.classic_address)
            signed = sign(
                TicketCreate(
                    account=wallet.classic_address,
                    ticket_count=count,
                    sequence=sequence,
                    fee=str(XRPL_FEE_DROPS),
                    last_ledger_sequence=last,
                ),
                wallet,
            )
            blobs.append((signed.get_hash(), encode(signed.to_xrpl())))
            # rippled numbers the tickets Sequence+1 .. Sequence+count
            tickets[wallet.classic_address] = list(range(sequence + 1, sequence + 1 + count))
        self.settle(blobs)
        return tickets

    # the measured runs -------------------------------------------------------------------

    def run_one_account(self, n: int, deadline_s: float) -> XrplRun:
        sender = Wallet.create(algorithm=CryptoAlgorithm.ED25519)
        destination = Wallet.create()
        self.fund([sender.classic_address, destination.classic_address], xrp=100_000)
        first = self.client.next_sequence(sender.classic_address)
        batch = PaymentBatch(
            seed=sender.seed or "",
            destination=destination.classic_address,
            last_ledger_sequence=self.client.current_index() + 10_000,
            sequences=tuple(range(first, first + n)),
        )
        # split the signing over the workers, keeping the sequence order of the result
        chunks = [replace(batch, sequences=part) for part in _split(batch.sequences, 8)]
        signed = [pair for part in self.pool.map(sign_batch, chunks) for pair in part]
        return self._run(
            "one account, sequences",
            [signed],
            [destination.classic_address],
            deadline_s,
        )

    def run_tickets(self, n: int, deadline_s: float) -> XrplRun:
        per_account = -(-n // XRPL_TICKET_ACCOUNTS)
        if per_account > XRPL_MAX_TICKETS_PER_ACCOUNT:
            raise BenchFailure(f"{per_account} tickets per account is over rippled's 250")
        senders = [
            Wallet.create(algorithm=CryptoAlgorithm.ED25519) for _ in range(XRPL_TICKET_ACCOUNTS)
        ]
        destination = Wallet.create()
        self.fund([w.classic_address for w in senders] + [destination.classic_address], xrp=1_000)
        tickets = self.create_tickets(senders, per_account)
        last = self.client.current_index() + 10_000
        batches = [
            PaymentBatch(
                seed=wallet.seed or "",
                destination=destination.classic_address,
                last_ledger_sequence=last,
                tickets=tuple(tickets[wallet.classic_address]),
            )
            for wallet in senders
        ]
        by_account = self.pool.map(sign_batch, batches)
        # thread k submits the payments of accounts k, k+4, k+8..., round robin over them
        jobs: list[list[tuple[str, str]]] = []
        for k in range(XRPL_TICKET_THREADS):
            mine = by_account[k::XRPL_TICKET_THREADS]
            jobs.append([p for row in zip(*mine, strict=True) for p in row])
        return self._run(
            f"tickets, {XRPL_TICKET_ACCOUNTS} accounts",
            jobs,
            [destination.classic_address],
            deadline_s,
        )

    def _run(
        self,
        label: str,
        jobs: list[list[tuple[str, str]]],
        destinations: list[str],
        deadline_s: float,
    ) -> XrplRun:
        before = {d: self.client.balance_drops(d) for d in destinations}
        first_ledger = self.client.current_index()
        submitted: list[str] = []  # accepted into the open ledger, or held for the next
        refused: dict[str, int] = {}
        held = 0
        last_sent: list[str] = []  # each thread's last submit
        lock = threading.Lock()
        done = threading.Event()
        stop_at = time.monotonic() + deadline_s

        def submitter(job: list[tuple[str, str]]) -> None:
            nonlocal held
            sent_by_me = ""
            for tx_hash, blob in job:
                if time.monotonic() > stop_at:
                    break
                code = self.client.rpc("submit", tx_blob=blob).get("engine_result", "error")
                with lock:
                    if code == "tesSUCCESS":
                        submitted.append(tx_hash)
                    elif code in ("terPRE_SEQ", "terPRE_TICKET"):
                        submitted.append(tx_hash)  # held: applies when the next ledger opens
                        held += 1
                    else:
                        refused[code] = refused.get(code, 0) + 1
                    sent_by_me = tx_hash
            with lock:
                if sent_by_me:
                    last_sent.append(sent_by_me)

        def closer() -> None:
            # On demand: close whenever a batch has gathered, and once more at the end.
            closed_at = 0
            while True:
                finished = done.is_set()
                with lock:
                    count = len(submitted)
                if count - closed_at >= XRPL_BATCH_PER_LEDGER or (finished and count > closed_at):
                    self.client.rpc("ledger_accept")
                    closed_at = count
                elif finished:
                    return
                else:
                    time.sleep(POLL_S)

        threads = [threading.Thread(target=submitter, args=(job,)) for job in jobs]
        closing = threading.Thread(target=closer) if self.close_interval_s == 0 else None
        started = time.perf_counter()
        if closing is not None:
            closing.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        submit_s = time.perf_counter() - started
        done.set()
        if closing is not None:
            closing.join()
        if held and self.close_interval_s == 0:
            self.client.rpc("ledger_accept")  # held transactions apply in the next ledger
        # Each thread submitted in order, so once every thread's last transaction is in
        # a validated ledger, so is every earlier one (held ones aside, checked below).
        for tx_hash in last_sent:
            wait_until(
                lambda h=tx_hash: self.client.rpc("tx", transaction=h).get("validated") is True,
                30,
                f"{tx_hash} in a validated ledger",
            )
        seconds = time.perf_counter() - started
        target = self.client.validated_index()

        codes, per_ledger = self.client.results_in(first_ledger, target)
        refused_at_submit = sum(refused.values())
        ours = set(submitted)
        applied = sum(1 for h in ours if codes.get(h) == "tesSUCCESS")
        for h in ours:
            if codes.get(h) != "tesSUCCESS":
                refused[codes.get(h, "not in a validated ledger")] = (
                    refused.get(codes.get(h, "not in a validated ledger"), 0) + 1
                )
        gained = sum(self.client.balance_drops(d) - before[d] for d in destinations)
        if gained != applied * XRPL_PAYMENT_DROPS:
            raise BenchFailure(
                f"{label}: destinations gained {gained} drops, but {applied} payments of "
                f"{XRPL_PAYMENT_DROPS} were counted"
            )
        used = [c for c in per_ledger.values() if c]
        return XrplRun(
            label=label,
            close=close_label(self.close_interval_s),
            threads=len(jobs),
            submitted=len(submitted) + refused_at_submit,
            applied=applied,
            seconds=seconds,
            ledgers=len(used),
            max_per_ledger=max(used, default=0),
            refused=refused,
            submit_s=submit_s,
        )


def _split(items: tuple[int, ...], parts: int) -> list[tuple[int, ...]]:
    size = -(-len(items) // parts)
    return [items[i : i + size] for i in range(0, len(items), size)]


def xrpl_costs(samples: int = 20) -> dict[str, float]:
    """Per-transaction costs the node pays before applying a payment, in ms: decoding
    and re-encoding the blob (canonical check) and verifying its ed25519 signature
    through OpenSSL (``adapters.xrpl_signatures``), as ``LedgerChain.decode_blob`` does."""
    wallet = Wallet.create(algorithm=CryptoAlgorithm.ED25519)
    blobs = sign_batch(
        PaymentBatch(
            seed=wallet.seed or "",
            destination=Wallet.create().classic_address,
            last_ledger_sequence=1_000,
            sequences=tuple(range(1, samples + 1)),
        )
    )
    t0 = time.perf_counter()
    jsons = [decode(blob) for _, blob in blobs]
    for tx_json in jsons:
        encode(tx_json)
    t1 = time.perf_counter()
    for tx_json in jsons:
        assert signature_failure(tx_json) is None
    t2 = time.perf_counter()
    return {
        "codec_ms": (t1 - t0) / samples * 1000,
        "verify_ms": (t2 - t1) / samples * 1000,
    }


# --- Stellar --------------------------------------------------------------------------------


@dataclass
class StellarRun:
    close: str
    accounts: int
    txs: int
    ops_applied: int
    seconds: float
    ledgers: int
    closed: int  # ledgers the node closed during the window
    close_ms_p50: float | None
    queue_ms_p50: float | None
    answer_ms_p50: float | None

    @property
    def ops_per_s(self) -> float:
        return self.ops_applied / self.seconds


class StellarBench:
    """One Stellar node; sources funded by the root account over Horizon."""

    def __init__(self, close_interval_s: float, accounts: int) -> None:
        self.close_interval_s = close_interval_s
        # no ledger size limit: each round floods one ledger on purpose
        self.node = StellarNode(close_interval_s=close_interval_s, max_tx_set_size=None)
        self.url = self.node.start(port=0)
        connections = accounts + 8
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.http = httpx.Client(base_url=self.url, timeout=60.0, limits=limits)
        self.passphrase = self.node.network_passphrase
        self.close_ms: list[float] = []
        self.queue_ms: list[float] = []  # first POST of a round until all are queued
        self.answer_ms: list[float] = []  # end of the close until every answer is in

    def stop(self) -> None:
        self.http.close()
        self.node.stop()

    def sequence(self, account_id: str) -> int:
        answer = self.http.get(f"/accounts/{account_id}")
        answer.raise_for_status()
        return int(answer.json()["sequence"])

    def native_stroops(self, account_id: str) -> int:
        answer = self.http.get(f"/accounts/{account_id}")
        answer.raise_for_status()
        for line in answer.json()["balances"]:
            if line["asset_type"] == "native":
                return int(Decimal(line["balance"]) * STROOPS_PER_XLM)
        raise BenchFailure(f"{account_id} has no native balance")

    def post(self, envelope_xdr: str) -> dict[str, Any]:
        answer = self.http.post("/transactions", data={"tx": envelope_xdr})
        body: dict[str, Any] = answer.json()
        if answer.status_code != 200 or body.get("successful") is not True:
            raise BenchFailure(f"Horizon answered {answer.status_code}: {body}")
        return body

    def post_round(self, envelopes: list[str], pool: ThreadPoolExecutor) -> list[dict[str, Any]]:
        """POST every envelope at once; on demand, close the ledger once all are queued."""
        t_start = time.perf_counter()
        futures = [pool.submit(self.post, e) for e in envelopes]
        if self.close_interval_s == 0:
            wait_until(
                lambda: self.node.pending_count == len(envelopes) or any(f.done() for f in futures),
                30,
                "every transaction of the round in the queue",
            )
            t0 = time.perf_counter()
            self.node.close_ledger()
            t1 = time.perf_counter()
            answers = [f.result() for f in futures]
            self.queue_ms.append((t0 - t_start) * 1000)
            self.close_ms.append((t1 - t0) * 1000)
            self.answer_ms.append((time.perf_counter() - t1) * 1000)
            return answers
        return [f.result() for f in futures]

    def create_accounts(self, count: int, pool: ThreadPoolExecutor) -> list[Keypair]:
        root = self.node.root_keypair
        keypairs = [Keypair.random() for _ in range(count)]
        builder = TransactionBuilder(
            SdkAccount(root.public_key, self.sequence(root.public_key)),
            self.passphrase,
            base_fee=100,
        ).add_time_bounds(0, 0)
        for keypair in keypairs:
            builder.append_create_account_op(keypair.public_key, "10000")
        envelope = builder.build()
        envelope.sign(root)
        self.post_round([envelope.to_xdr()], pool)
        return keypairs

    def run(self, accounts: int, rounds: int) -> StellarRun:
        with ThreadPoolExecutor(max_workers=accounts) as pool:
            sources = self.create_accounts(accounts + STELLAR_DESTINATIONS, pool)
            sources, destinations = sources[:accounts], sources[accounts:]
            before = sum(self.native_stroops(d.public_key) for d in destinations)
            amount = f"{Decimal(STELLAR_PAYMENT_STROOPS) / STROOPS_PER_XLM:f}"
            # every envelope built and signed before the clock starts
            by_source: list[list[str]] = []
            for source in sources:
                account = SdkAccount(source.public_key, self.sequence(source.public_key))
                envelopes = []
                for _ in range(rounds):
                    builder = TransactionBuilder(
                        account, self.passphrase, base_fee=100
                    ).add_time_bounds(0, 0)
                    for op in range(STELLAR_OPS_PER_TX):
                        destination = destinations[op % STELLAR_DESTINATIONS].public_key
                        builder.append_payment_op(destination, SdkAsset.native(), amount)
                    envelope = builder.build()
                    envelope.sign(source)
                    envelopes.append(envelope.to_xdr())
                by_source.append(envelopes)
            first_ledger = self.node.latest_ledger
            for kept in (self.close_ms, self.queue_ms, self.answer_ms):
                kept.clear()
            answers: list[dict[str, Any]] = []
            started = time.perf_counter()
            if self.close_interval_s == 0:
                for r in range(rounds):
                    answers += self.post_round([row[r] for row in by_source], pool)
            else:
                # each account sends its next transaction as soon as the last one is in
                for part in pool.map(lambda row: [self.post(e) for e in row], by_source):
                    answers += part
            seconds = time.perf_counter() - started
            closed = self.node.latest_ledger - first_ledger
            ops = sum(int(a["operation_count"]) for a in answers if a["successful"] is True)
            gained = sum(self.native_stroops(d.public_key) for d in destinations) - before
            if gained != ops * STELLAR_PAYMENT_STROOPS:
                raise BenchFailure(
                    f"destinations gained {gained} stroops, but {ops} payments of "
                    f"{STELLAR_PAYMENT_STROOPS} were counted"
                )
            ledgers = len({a["ledger"] for a in answers})
            assert min(a["ledger"] for a in answers) > first_ledger
        return StellarRun(
            close=close_label(self.close_interval_s),
            accounts=accounts,
            txs=len(answers),
            ops_applied=ops,
            seconds=seconds,
            ledgers=ledgers,
            closed=closed,
            close_ms_p50=statistics.median(self.close_ms) if self.close_ms else None,
            queue_ms_p50=statistics.median(self.queue_ms) if self.queue_ms else None,
            answer_ms_p50=statistics.median(self.answer_ms) if self.answer_ms else None,
        )


# --- adapter latency --------------------------------------------------------------------------


@dataclass
class LatencyRun:
    chain: ChainName
    lock_s: list[float]
    commit_s: list[float]
    polls: int

    @property
    def total_s(self) -> list[float]:
        return [a + b for a, b in zip(self.lock_s, self.commit_s, strict=True)]


def until_applied(chain: Chain, submission: SignedSubmission, outcome: Outcome) -> int:
    """Poll ``status`` until Applied; the number of polls. Any final failure stops the run."""
    polls = 0
    deadline = time.monotonic() + 30
    while not isinstance(outcome, Applied):
        if outcome.__class__.__name__ in ("Rejected", "Expired") or time.monotonic() > deadline:
            raise BenchFailure(f"{chain.name} {submission.purpose}: {outcome}")
        time.sleep(POLL_S)
        outcome = chain.status(submission)
        polls += 1
    return polls


def settle_many(chain: Chain, leg: Leg, count: int) -> LatencyRun:
    run = LatencyRun(chain.name, [], [], 0)
    for _ in range(count):
        lock = HashLock.generate()
        terms = LockTerms(lock.condition_hex, datetime.now(UTC) + timedelta(hours=1))
        t0 = time.perf_counter()
        locking = chain.prepare_lock(leg, terms)
        run.polls += until_applied(chain, locking, chain.submit(locking))
        t1 = time.perf_counter()
        assert locking.lock_ref is not None
        committing = chain.prepare_commit(leg, locking.lock_ref, lock.fulfillment_hex)
        run.polls += until_applied(chain, committing, chain.submit(committing))
        t2 = time.perf_counter()
        run.lock_s.append(t1 - t0)
        run.commit_s.append(t2 - t1)
    return run


def adapter_latency(world: LocalWorld, count: int) -> list[LatencyRun]:
    bond_leg = Leg(
        ChainName.XRPL,
        world.bond,
        Decimal(1),
        world.seller_xrpl.classic_address,
        world.buyer_xrpl.classic_address,
    )
    usdc_leg = Leg(
        ChainName.STELLAR,
        world.usdc,
        Decimal(1),
        world.buyer_stellar.public_key,
        world.seller_stellar.public_key,
    )
    before = world.holdings()
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(settle_many, world.chains[ChainName.XRPL], bond_leg, count),
            pool.submit(settle_many, world.chains[ChainName.STELLAR], usdc_leg, count),
        ]
        runs = [f.result() for f in futures]
    after = world.holdings()
    moved = {
        "BND:buyer": Decimal(count),
        "BND:seller": -Decimal(count),
        "USDC:seller": Decimal(count),
        "USDC:buyer": -Decimal(count),
    }
    for key, delta in moved.items():
        if after[key] - before[key] != delta:
            raise BenchFailure(f"{key} moved {after[key] - before[key]}, expected {delta}")
    return runs


# --- report ------------------------------------------------------------------------------------


def xrpl_limit(run: XrplRun, ceiling_tx_s: float) -> str:
    if run.applied < run.submitted:
        return f"{run.submitted - run.applied} not applied: {run.refused}"
    wait_s = run.seconds - run.submit_s
    if run.close != "on demand" and wait_s > 0.2 * run.seconds:
        return (
            f"{run.submit_s:.1f} s submitting ({run.applied / run.submit_s:.0f} tx/s), then"
            f" {wait_s:.1f} s waiting for the last 1 s close"
        )
    share = run.tx_per_s / ceiling_tx_s
    return f"node CPU: decode+verify alone caps at {ceiling_tx_s:.0f} tx/s ({share:.0%} of it)"


def stellar_limit(run: StellarRun, interval_s: float) -> str:
    if interval_s == 0:
        assert run.close_ms_p50 is not None
        assert run.queue_ms_p50 is not None
        assert run.answer_ms_p50 is not None
        per_ledger = run.accounts * STELLAR_OPS_PER_TX
        return (
            f"node CPU, per ledger (p50): {run.queue_ms_p50:.0f} ms taking in {run.accounts}"
            f" POSTs, {run.close_ms_p50:.0f} ms close applying {per_ledger} ops,"
            f" {run.answer_ms_p50:.0f} ms answering"
        )
    bound = run.accounts * STELLAR_OPS_PER_TX / interval_s
    if run.ops_per_s > 0.8 * bound:
        return f"bounded by the 1 s close: {run.accounts} accounts x 100 ops per ledger"
    period_s = run.seconds / run.closed
    return (
        f"below {bound:.0f} ops/s: a ledger closed every {period_s:.2f} s, as the timer"
        " waits 1 s after each close ends and a full close takes a while"
    )


def latency_limit(values_s: list[float], interval_s: float) -> str:
    p50 = statistics.median(values_s)
    if 0.4 * interval_s <= p50 <= 2.5 * interval_s:
        return f"bounded by the {interval_s:g} s close (two ledgers, lock then commit)"
    return "not the close interval"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=6.0, help="target length of each throughput window"
    )
    parser.add_argument("--quick", action="store_true", help="short windows, few settlements")
    args = parser.parse_args()
    seconds = 2.0 if args.quick else args.seconds
    settlements = 6 if args.quick else 20
    stellar_accounts = 10 if args.quick else 20
    stellar_rounds = 2 if args.quick else max(3, round(seconds))
    # the XRPL node applies roughly 60-100 ed25519 payments a second on this machine
    xrpl_n = int(seconds * 100)

    # Fork the signing workers before any node starts its threads.
    pool = mp.get_context("fork").Pool(processes=os.cpu_count() or 2)
    wall = time.perf_counter()
    print(
        f"local networks in process; {os.cpu_count()} cores; Python {platform.python_version()};"
        f" stellar-sdk {stellar_sdk.__version__}; {'quick' if args.quick else 'full'} run\n"
    )

    costs = xrpl_costs()
    ceiling = 1000 / (costs["codec_ms"] + costs["verify_ms"])
    xrpl_runs: list[XrplRun] = []
    for interval in (0.0, 1.0):
        bench = XrplBench(interval, pool)
        try:
            xrpl_runs.append(bench.run_one_account(xrpl_n, deadline_s=3 * seconds))
            xrpl_runs.append(bench.run_tickets(xrpl_n, deadline_s=3 * seconds))
        finally:
            bench.stop()
    pool.close()
    pool.join()

    stellar_runs: list[tuple[float, StellarRun]] = []
    for interval in (0.0, 1.0):
        sbench = StellarBench(interval, stellar_accounts)
        try:
            stellar_runs.append((interval, sbench.run(stellar_accounts, stellar_rounds)))
        finally:
            sbench.stop()

    t0 = time.perf_counter()
    # Provisioning at a 1 s close takes ~20 s (some twenty set-up transactions, each
    # waiting for its ledger), more than --quick allows. So the world is provisioned at
    # the fast default intervals and both nodes are then switched to 1 s: their closer
    # threads read close_interval_s before every wait. The closes observed during the
    # run are checked below, so a node that ignored the switch would stop the run.
    world = bootstrap.local_world()
    world.xrpl_node.close_interval_s = 1.0
    world.stellar_node.close_interval_s = 1.0
    setup_s = time.perf_counter() - t0
    time.sleep(0.2)  # the closers finish the short wait they are in
    try:
        xrpl_first = int(world.xrpl.rpc("ledger_closed")["ledger_index"])
        stellar_first = world.stellar_node.latest_ledger
        t1 = time.perf_counter()
        latency_runs = adapter_latency(world, settlements)
        elapsed_s = time.perf_counter() - t1
        observed_close_s = {
            "xrpl": elapsed_s / (int(world.xrpl.rpc("ledger_closed")["ledger_index"]) - xrpl_first),
            "stellar": elapsed_s / (world.stellar_node.latest_ledger - stellar_first),
        }
    finally:
        world.close()
    for chain_name, interval_s in observed_close_s.items():
        if not 0.9 <= interval_s <= 1.3:
            raise BenchFailure(f"{chain_name} closed a ledger every {interval_s:.2f} s, not 1 s")

    print(
        "XRPL node: ed25519 XRP Payments, JSON-RPC submit over HTTP, signed beforehand;"
        " only tesSUCCESS in validated ledgers counted"
    )
    header = (
        f"  {'sender(s)':<26} {'close':<10} {'thr':>3} {'sent':>5} {'applied':>7}"
        f" {'ledgers':>7} {'max/ldg':>7} {'s':>6} {'tx/s':>6}  limited by"
    )
    print(header)
    for run in xrpl_runs:
        print(
            f"  {run.label:<26} {run.close:<10} {run.threads:>3} {run.submitted:>5}"
            f" {run.applied:>7} {run.ledgers:>7} {run.max_per_ledger:>7} {run.seconds:>6.2f}"
            f" {run.tx_per_s:>6.1f}  {xrpl_limit(run, ceiling)}"
        )
    print(
        f"  per payment, measured alone: binary codec {costs['codec_ms']:.2f} ms,"
        f" ed25519 verify (OpenSSL) {costs['verify_ms']:.2f} ms\n"
    )

    print(
        "Stellar node: Payment ops, 100 per transaction, one transaction per account per"
        " ledger, Horizon POST /transactions"
    )
    print(
        f"  {'close':<10} {'accounts':>8} {'txs':>5} {'ops applied':>11} {'ledgers':>7}"
        f" {'s':>6} {'ops/s':>7}  limited by"
    )
    for interval, srun in stellar_runs:
        print(
            f"  {srun.close:<10} {srun.accounts:>8} {srun.txs:>5} {srun.ops_applied:>11}"
            f" {srun.ledgers:>7} {srun.seconds:>6.2f} {srun.ops_per_s:>7.0f}"
            f"  {stellar_limit(srun, interval)}"
        )
    print()

    print(
        f"Adapter lock+commit, both nodes closing every 1 s, {settlements} settlements per"
        f" chain (sequential per chain, chains in parallel); world set-up {setup_s:.1f} s;"
        f" observed close every {observed_close_s['xrpl']:.2f} s (XRPL),"
        f" {observed_close_s['stellar']:.2f} s (Stellar)"
    )
    print(
        f"  {'chain':<8} {'lock p50/p99 ms':>16} {'commit p50/p99 ms':>18}"
        f" {'lock+commit p50/p99 ms':>23} {'polls':>6}  limited by"
    )
    for lrun in latency_runs:
        print(
            f"  {lrun.chain.value:<8}"
            f" {percentile_ms(lrun.lock_s, 0.5):>7.0f}/{percentile_ms(lrun.lock_s, 0.99):<8.0f}"
            f" {percentile_ms(lrun.commit_s, 0.5):>8.0f}/{percentile_ms(lrun.commit_s, 0.99):<9.0f}"
            f" {percentile_ms(lrun.total_s, 0.5):>11.0f}/{percentile_ms(lrun.total_s, 0.99):<11.0f}"
            f" {lrun.polls:>6}  {latency_limit(lrun.total_s, 1.0)}"
        )
    print(
        f"\npeak RSS of this process: {peak_rss_mib():.0f} MiB;"
        f" whole run {time.perf_counter() - wall:.0f} s"
    )


if __name__ == "__main__":
    main()
