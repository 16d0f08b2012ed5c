"""Horizon as the Stellar adapter reads it: typed views, every call through the guard.

stellar-sdk's ``Server`` does the HTTP, over a ``RequestsClient`` with retries off: its
default resends a POST on a 504 or a broken connection by itself, and resending is a
decision the reliable-submission rule must take, not the HTTP client. stellar-sdk's
and requests' exceptions become ours in exactly one place, ``_transport``.

Reads (GET) are idempotent and go through ``ChainGuard.call`` (breaker and retries).
A submission (POST) goes through ``ChainGuard.call_once``: one attempt, because a
POST may wait out Horizon's submission timeout (30 s) and the engine decides when to
send the same envelope again; a transport failure still counts against the breaker.

Two submission routes: ``submit`` (POST /transactions) holds the request until the
ledger that includes the transaction closes; ``submit_async`` (POST
/transactions_async) relays stellar-core's verdict on queueing it at once, a body
``{"tx_status": PENDING | DUPLICATE | TRY_AGAIN_LATER | ERROR, "hash": ...}`` under
201, 409, 503 and 400. Such a body is Horizon answering about the transaction, a
``Reply`` whatever its status (a 503 TRY_AGAIN_LATER included); any other 5xx is a
server fault.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from stellar_sdk import Server, TransactionEnvelope
from stellar_sdk import exceptions as sdk
from stellar_sdk.call_builder.call_builder_sync import BaseCallBuilder
from stellar_sdk.client.requests_client import (
    IDENTIFICATION_HEADERS,
    USER_AGENT,
    RequestsClient,
)
from stellar_sdk.client.response import Response
from stellar_sdk.utils import urljoin_with_query

from adapters.errors import AdapterError, TransportError
from adapters.resilience import ChainGuard

Json = dict[str, Any]
TIMEOUT_TYPES = (
    "https://stellar.org/horizon-errors/transaction_submission_timeout",
    "https://stellar.org/horizon-errors/timeout",  # older Horizon releases
)
#: stellar-core's statuses, as POST /transactions_async relays them in ``tx_status``
ASYNC_STATUSES = ("PENDING", "DUPLICATE", "TRY_AGAIN_LATER", "ERROR")


class ResponseLost(TransportError):
    """A submission was sent (or may have been) and no answer came back: a read
    timeout, a connection reset mid-way. The transaction may well apply."""


@dataclass(frozen=True)
class Reply:
    """An HTTP answer from Horizon that is about the request (not a server fault).

    ``latest_ledger`` is its ``Latest-Ledger`` header, when the read kept it: the last
    ledger the answering server had ingested, with which Horizon guarantees the
    answer's data is consistent (a 404 included: nothing by that name up to it).
    """

    status: int
    body: Json
    latest_ledger: int | None = None

    @property
    def problem_type(self) -> str:
        return str(self.body.get("type", ""))

    @property
    def tx_status(self) -> str | None:
        """stellar-core's status in an answer of POST /transactions_async, else None."""
        status = self.body.get("tx_status")
        return status if status in ASYNC_STATUSES else None


@dataclass(frozen=True)
class LedgerHeader:
    sequence: int
    hash: str
    closed_at: datetime
    base_fee_stroops: int
    base_reserve_stroops: int


@dataclass(frozen=True)
class FeeStats:
    """GET /fee_stats: per-operation fees of the transactions in the last five ledgers.

    ``fee_charged`` and ``max_fee`` map Horizon's percentile names (``p10`` ... ``p99``,
    ``min``, ``max``, ``mode``) to stroops; ``ledger_capacity_usage`` is the last
    ledger's operations over its capacity (1 when full: a surge)."""

    last_ledger: int
    last_ledger_base_fee_stroops: int
    ledger_capacity_usage: Decimal
    fee_charged: dict[str, int]
    max_fee: dict[str, int]


@dataclass(frozen=True)
class TrustLine:
    balance: Decimal
    limit: Decimal
    buying_liabilities: Decimal
    selling_liabilities: Decimal
    #: fully authorised: may receive and send (the issuer's AUTHORIZED_FLAG)
    authorized: bool
    #: may keep its offers and balances but not receive (AUTHORIZED_TO_MAINTAIN_LIABILITIES)
    maintains_liabilities_only: bool = False
    #: the issuer may claw its asset back from this line (TRUSTLINE_CLAWBACK_ENABLED)
    clawback_enabled: bool = False


@dataclass(frozen=True)
class AccountView:
    account_id: str
    sequence: int
    native_balance: Decimal
    native_selling_liabilities: Decimal
    subentry_count: int
    num_sponsoring: int
    num_sponsored: int
    #: keyed by (asset code, issuer)
    lines: dict[tuple[str, str], TrustLine]
    #: the ledger the answer was consistent with (its Latest-Ledger header), if known
    latest_ledger: int | None = None


@dataclass(frozen=True)
class TxView:
    hash: str
    ledger: int
    successful: bool
    result_xdr: str
    fee_charged_stroops: int
    source_account: str
    #: Horizon's memo fields: ``memo_type`` none|text|id|hash|return, ``memo`` as it
    #: renders it (a hash memo in base64)
    memo_type: str = "none"
    memo: str = ""


@dataclass(frozen=True)
class TxLookup:
    """A transaction looked up by hash: ``found`` None when the answering server has it
    in no ledger up to ``latest_ledger`` (None when the header was missing)."""

    found: TxView | None
    latest_ledger: int | None


@dataclass(frozen=True)
class Claimant:
    destination: str
    predicate: Json


@dataclass(frozen=True)
class BalanceOperation:
    """An operation that changed a claimable balance's entry, as its history lists it.

    ``kind`` is Horizon's operation type (create_claimable_balance,
    claim_claimable_balance, clawback_claimable_balance, ...); ``claimant`` is who
    claimed it (a claim), ``amount`` what was put in it (a creation).
    """

    operation_id: int
    kind: str
    transaction_hash: str
    source_account: str
    claimant: str = ""
    amount: Decimal | None = None

    @property
    def ledger(self) -> int:
        """The ledger that applied it: the high 32 bits of its TOID."""
        return self.operation_id >> 32


@dataclass(frozen=True)
class TxOperation:
    """An operation of a transaction, as GET /transactions/{hash}/operations lists it.

    ``kind`` is Horizon's operation type (payment, claim_claimable_balance, ...); a
    payment also names its destination ``to``, its ``asset`` (canonical: ``native`` or
    ``CODE:ISSUER``) and its ``amount``, which other kinds leave empty.
    """

    kind: str
    source_account: str
    transaction_successful: bool
    to: str = ""
    asset: str = ""
    amount: Decimal | None = None


@dataclass(frozen=True)
class BalanceHistory:
    """A claimable balance's history as one Horizon answer gives it, consistent with
    ledger ``latest_ledger`` (None when the header was missing)."""

    operations: tuple[BalanceOperation, ...]
    latest_ledger: int | None


@dataclass(frozen=True)
class BalanceView:
    balance_id: str
    #: Horizon's canonical form: "native" or "CODE:ISSUER"
    asset: str
    amount: Decimal
    claimants: tuple[Claimant, ...]
    #: the account that sponsors the entry: its creator, unless sponsorship moved
    sponsor: str = ""


class Horizon:
    """One Horizon server; thread-safe as far as requests' session is."""

    def __init__(
        self,
        url: str,
        guard: ChainGuard,
        *,
        get_timeout_s: int = 11,
        post_timeout_s: float = 35.0,
        pool_size: int = 64,
    ) -> None:
        self.url = url
        self._guard = guard
        self._client = RequestsClient(
            num_retries=0,
            request_timeout=get_timeout_s,
            post_timeout=post_timeout_s,
            session=_session(url, pool_size),
        )
        self._server = Server(url, client=self._client)

    def close(self) -> None:
        self._server.close()

    # -- reads ---------------------------------------------------------------------------

    def latest_ledger(self) -> LedgerHeader:
        """The last ledger Horizon has ingested: its close time is "now" for the ledger."""
        body = self._get(lambda: self._server.ledgers().order(desc=True).limit(1).call())
        records = (body or {}).get("_embedded", {}).get("records", [])
        if not records:
            raise AdapterError("Horizon lists no ledger")
        return _ledger(records[0])

    def ledger(self, sequence: int) -> LedgerHeader | None:
        body = self._get(lambda: self._server.ledgers().ledger(sequence).call())
        return None if body is None else _ledger(body)

    def fee_stats(self) -> FeeStats:
        body = self._get(lambda: self._server.fee_stats().call())
        if body is None:
            raise AdapterError("Horizon has no fee statistics")
        return FeeStats(
            last_ledger=int(body["last_ledger"]),
            last_ledger_base_fee_stroops=int(body["last_ledger_base_fee"]),
            ledger_capacity_usage=Decimal(str(body["ledger_capacity_usage"])),
            fee_charged={k: int(v) for k, v in body["fee_charged"].items()},
            max_fee={k: int(v) for k, v in body["max_fee"].items()},
        )

    def history_elder_ledger(self) -> int:
        """The oldest ledger whose transactions Horizon still serves."""
        body = self._get(lambda: self._server.root().call())
        if body is None:
            raise AdapterError("Horizon has no root resource")
        return int(body["history_elder_ledger"])

    def account(self, account_id: str) -> AccountView | None:
        """The account as the answering server holds it, at its ``latest_ledger``."""
        reply = self._answer(self._server.accounts().account_id(account_id))
        if reply.status == 404:
            return None
        return replace(_account(reply.body), latest_ledger=reply.latest_ledger)

    def transaction(self, tx_hash: str) -> TxView | None:
        return self.transaction_lookup(tx_hash).found

    def transaction_lookup(self, tx_hash: str) -> TxLookup:
        """GET /transactions/{hash}, with the ledger the answer is consistent with: a
        404 says the transaction is in no ledger up to that one, on that server."""
        reply = self._answer(self._server.transactions().transaction(tx_hash))
        found = None if reply.status == 404 else tx_view(reply.body)
        return TxLookup(found, reply.latest_ledger)

    def transaction_operations(self, tx_hash: str) -> tuple[TxOperation, ...] | None:
        """The operations of transaction ``tx_hash``, in order, from one answer; None
        when the answering server has no such transaction (a 404, or an empty page: a
        server that has not ingested its ledger). A transaction holds at most 100
        operations, so one page holds them all."""
        reply = self._answer(self._server.operations().for_transaction(tx_hash).limit(200))
        records = [] if reply.status == 404 else reply.body.get("_embedded", {}).get("records", [])
        if not records:
            return None
        return tuple(_tx_operation(r) for r in records)

    def claimable_balance(self, balance_id: str) -> BalanceView | None:
        body = self._get(
            lambda: self._server.claimable_balances().claimable_balance(balance_id).call()
        )
        return None if body is None else _balance(body)

    def account_transactions(self, account_id: str, *, page_size: int = 200) -> list[TxView]:
        """Every successful transaction of ``account_id`` (sent or touching it), oldest
        first, all pages; empty for an account Horizon does not know."""
        found: list[TxView] = []
        cursor: str | None = None
        while True:

            def page(after: str | None = cursor) -> Json:
                call = self._server.transactions().for_account(account_id).limit(page_size)
                answer: Json = (call.cursor(after) if after else call).call()
                return answer

            body = self._get(page)
            records = (body or {}).get("_embedded", {}).get("records", [])
            found.extend(tx_view(r) for r in records)
            if len(records) < page_size:
                return found
            cursor = str(records[-1]["paging_token"])

    def claimable_balances_for(self, claimant: str, *, page_size: int = 200) -> list[BalanceView]:
        """Every claimable balance ``claimant`` may claim (now or later), all pages."""
        found: list[BalanceView] = []
        cursor: str | None = None
        while True:

            def page(after: str | None = cursor) -> Json:
                call = self._server.claimable_balances().for_claimant(claimant).limit(page_size)
                answer: Json = (call.cursor(after) if after else call).call()
                return answer

            body = self._get(page)
            records = (body or {}).get("_embedded", {}).get("records", [])
            found.extend(_balance(r) for r in records)
            if len(records) < page_size:
                return found
            cursor = str(records[-1]["paging_token"])

    def balance_history(self, balance_id: str, *, page_size: int = 200) -> BalanceHistory | None:
        """The operations that changed the balance's entry, oldest first, from one
        answer (GET /claimable_balances/{id}/operations); None when the answering
        server's history has no such balance (not yet ingested, never created, or
        pruned). A balance's history is its creation and at most one release, so one
        page holds it."""
        reply = self._answer(
            self._server.operations().for_claimable_balance(balance_id).limit(page_size)
        )
        if reply.status == 404:
            return None
        records = reply.body.get("_embedded", {}).get("records", [])
        return BalanceHistory(tuple(_balance_operation(r) for r in records), reply.latest_ledger)

    # -- submission ------------------------------------------------------------------------

    def submit(self, envelope: TransactionEnvelope) -> Reply:
        """POST /transactions once. Returns Horizon's answer, 504 (outcome unknown)
        included; raises ``ResponseLost`` when no answer came back, ``TransportError``
        when Horizon was not reached or failed (5xx, 429), ``BreakerOpen``."""
        return self._guard.call_once(
            _transport,
            lambda: self._server.submit_transaction(envelope, skip_memo_required_check=True),
            submission=True,
        )

    def submit_async(self, envelope: TransactionEnvelope) -> Reply:
        """POST /transactions_async once. Returns Horizon's answer: core's status (201
        PENDING, 409 DUPLICATE, 400 ERROR, 503 TRY_AGAIN_LATER) or a problem about the
        request (400 transaction_malformed, 403 submission disabled); raises
        ``ResponseLost`` when no answer came back, ``TransportError`` when Horizon was
        not reached or failed (500 transaction_submission_failed, other 5xx, 429),
        ``BreakerOpen``."""
        return self._guard.call_once(
            _transport,
            lambda: self._server.submit_transaction_async(envelope, skip_memo_required_check=True),
            submission=True,
            success_status=201,
        )

    def _answer(self, builder: BaseCallBuilder) -> Reply:
        """GET what ``builder`` names, keeping the answer's ``Latest-Ledger`` header
        (stellar-sdk's ``call`` returns the body alone): 200 or 404, else an error."""
        url = urljoin_with_query(builder.horizon_url, builder.endpoint)
        reply = self._guard.call(_transport, lambda: self._client.get(url, builder.params))
        if reply.status not in (200, 404):
            raise AdapterError(f"Horizon answered {reply.status} to a read: {reply.body}")
        return reply

    def _get(self, call: Callable[[], Json]) -> Json | None:
        reply = self._guard.call(_transport, call)
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise AdapterError(f"Horizon answered {reply.status} to a read: {reply.body}")
        return reply.body


def _transport(
    call: Callable[[], Json | Response], *, submission: bool = False, success_status: int = 200
) -> Reply:
    """The one place stellar-sdk and requests exceptions become ours.

    An HTTP answer about the request is a ``Reply``; a server fault (5xx, and 429: the
    server is shedding load) is a ``TransportError``, except a 504 to a submission,
    which is Horizon saying it stopped waiting for the ledger: an answer, "unknown",
    and stellar-core's status relayed by the asynchronous route (a 503
    TRY_AGAIN_LATER is core declining the transaction for now, not a server fault).
    stellar-sdk returns the body of a 2xx without its status: ``success_status`` is
    the one the route documents. A ``call`` that returns the client's whole response
    (``Horizon._answer``) keeps its status and ``Latest-Ledger`` header.
    """
    try:
        answer = call()
        if not isinstance(answer, Response):
            return Reply(success_status, answer)
        sdk.raise_request_exception(answer)
        return Reply(answer.status_code, answer.json(), _latest_ledger(answer))
    except sdk.BaseHorizonError as exc:
        status = exc.status
        core = _core_status(exc) if submission else None
        if core is not None:
            return Reply(status, core)
        if status == 504 and submission:
            return Reply(status, _problem(exc))
        if status >= 500 or status == 429:
            raise TransportError(f"Horizon answered {status}: {exc.title or exc.type}") from exc
        answered = exc.args[0] if exc.args and isinstance(exc.args[0], Response) else None
        return Reply(status, _problem(exc), None if answered is None else _latest_ledger(answered))
    except sdk.ConnectionError as exc:
        if submission and not _never_sent(exc):
            raise ResponseLost(f"no answer to a submission: {_cause(exc)}") from exc
        raise TransportError(f"Horizon unreachable: {_cause(exc)}") from exc
    except ValueError as exc:  # a 200 whose body is not JSON: not Horizon answering
        raise TransportError(f"unreadable answer from Horizon: {exc}") from exc


def _latest_ledger(response: Response) -> int | None:
    """The ``Latest-Ledger`` header (HTTP header names are case-insensitive)."""
    for name, value in response.headers.items():
        if name.lower() == "latest-ledger":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _core_status(exc: sdk.BaseHorizonError) -> Json | None:
    """The body of an asynchronous submission's answer that relays core's status
    (stellar-sdk raises for its 400, 409 and 503 and keeps only the text)."""
    try:
        body = json.loads(exc.message)
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("tx_status") in ASYNC_STATUSES:
        return body
    return None


def _session(url: str, pool_size: int) -> requests.Session:
    """The HTTP session under stellar-sdk's client, built here rather than by it for
    two reasons. requests reads the proxy settings from the environment again for every
    request (about 1.5 ms of CPU each, a good share of a poll): they are read once, now,
    so an operator's HTTPS_PROXY / NO_PROXY apply as set at start. And the client's
    default pool keeps 10 connections, fewer than a worker's threads: the others would
    open a connection per request. No retries, as ``RequestsClient(num_retries=0)``."""
    session = requests.Session()
    session.headers.update(IDENTIFICATION_HEADERS | {"User-Agent": USER_AGENT})
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.proxies.update(requests.utils.get_environ_proxies(url))
    session.trust_env = False
    return session


def _problem(exc: sdk.BaseHorizonError) -> Json:
    return {
        "type": exc.type or "",
        "title": exc.title or "",
        "detail": exc.detail or "",
        "extras": exc.extras or {},
    }


def _never_sent(exc: BaseException) -> bool:
    """Whether the request provably never reached the server (no connection was made)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.exceptions.ConnectTimeout):
            return True
        reason = getattr(seen, "reason", None)  # urllib3's MaxRetryError
        if isinstance(
            reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
        ):
            return True
        if isinstance(
            seen, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
        ):
            return True
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = nested or seen.__cause__
    return False


def _cause(exc: BaseException) -> str:
    root = exc.__cause__ or exc
    return f"{type(root).__name__}: {root}"


def tx_view(body: Json) -> TxView:
    """A transaction resource (GET /transactions/{hash}, or a submission's 200)."""
    return TxView(
        hash=str(body["hash"]),
        ledger=int(body["ledger"]),
        successful=bool(body["successful"]),
        result_xdr=str(body["result_xdr"]),
        fee_charged_stroops=int(body["fee_charged"]),
        source_account=str(body["source_account"]),
        memo_type=str(body.get("memo_type", "none")),
        memo=str(body.get("memo", "")),
    )


def _tx_operation(body: Json) -> TxOperation:
    kind = str(body["type"])
    operation = TxOperation(
        kind=kind,
        source_account=str(body["source_account"]),
        transaction_successful=bool(body["transaction_successful"]),
    )
    if kind != "payment":
        return operation
    asset = (
        "native"
        if body["asset_type"] == "native"
        else f"{body['asset_code']}:{body['asset_issuer']}"
    )
    return replace(operation, to=str(body["to"]), asset=asset, amount=Decimal(str(body["amount"])))


def _balance_operation(body: Json) -> BalanceOperation:
    amount = body.get("amount")
    return BalanceOperation(
        operation_id=int(body["id"]),
        kind=str(body["type"]),
        transaction_hash=str(body["transaction_hash"]),
        source_account=str(body["source_account"]),
        claimant=str(body.get("claimant", "")),
        amount=None if amount is None else Decimal(str(amount)),
    )


def _balance(body: Json) -> BalanceView:
    return BalanceView(
        balance_id=str(body["id"]),
        asset=str(body["asset"]),
        amount=Decimal(body["amount"]),
        claimants=tuple(
            Claimant(str(c["destination"]), dict(c["predicate"])) for c in body["claimants"]
        ),
        sponsor=str(body.get("sponsor", "")),
    )


def _ledger(body: Json) -> LedgerHeader:
    return LedgerHeader(
        sequence=int(body["sequence"]),
        hash=str(body["hash"]),
        closed_at=datetime.fromisoformat(str(body["closed_at"])),
        base_fee_stroops=int(body["base_fee_in_stroops"]),
        base_reserve_stroops=int(body["base_reserve_in_stroops"]),
    )


def _account(body: Json) -> AccountView:
    native = Decimal(0)
    native_selling = Decimal(0)
    lines: dict[tuple[str, str], TrustLine] = {}
    for balance in body["balances"]:
        kind = balance["asset_type"]
        if kind == "native":
            native = Decimal(balance["balance"])
            native_selling = Decimal(balance.get("selling_liabilities", "0"))
        elif kind in ("credit_alphanum4", "credit_alphanum12"):
            authorized = bool(balance.get("is_authorized", True))
            lines[(str(balance["asset_code"]), str(balance["asset_issuer"]))] = TrustLine(
                balance=Decimal(balance["balance"]),
                limit=Decimal(balance["limit"]),
                buying_liabilities=Decimal(balance.get("buying_liabilities", "0")),
                selling_liabilities=Decimal(balance.get("selling_liabilities", "0")),
                authorized=authorized,
                maintains_liabilities_only=not authorized
                and bool(balance.get("is_authorized_to_maintain_liabilities", False)),
                clawback_enabled=bool(balance.get("is_clawback_enabled", False)),
            )
    return AccountView(
        account_id=str(body["account_id"]),
        sequence=int(body["sequence"]),
        native_balance=native,
        native_selling_liabilities=native_selling,
        subentry_count=int(body["subentry_count"]),
        num_sponsoring=int(body.get("num_sponsoring", 0)),
        num_sponsored=int(body.get("num_sponsored", 0)),
        lines=lines,
    )
