"""The Python client of the signed API.

``SettlementClient`` signs every request (RFC 9421, Ed25519; ``settlement.signing``),
gives every mutating call an idempotency key, and retries safely: a connection error,
a timeout or a 409 ``request_in_flight`` is retried with the *same* idempotency key
(re-signed, with a fresh nonce), so a retry can only replay, never act twice. Every
other error is raised at once as ``ApiError`` with the RFC 9457 problem.

    with SettlementClient.from_key_file(url, key_id, "alloc.pem") as client:
        created = client.create_commitment(deal_ref="D-1", amount="1000.00", currency="USD")
        client.submit(created["commitment_id"], expected_version=created["version"])
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from settlement import signing, strict_json

API_PREFIX = "/v1"
DEFAULT_RETRIES = 4
_RETRY_BASE_S = 0.1
_RETRY_MAX_S = 2.0


class ApiError(Exception):
    """The API refused a request; ``problem`` is its RFC 9457 body."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        self.code = str(problem.get("code", f"http_{status}"))
        super().__init__(f"{status} {self.code}: {problem.get('detail', '')}")


class SettlementClient:
    def __init__(
        self,
        base_url: str,
        key_id: str,
        private_key: Ed25519PrivateKey | bytes,
        *,
        timeout_s: float = 10.0,
        retries: int = DEFAULT_RETRIES,
        transport: httpx.BaseTransport | None = None,
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``private_key`` is the key object or its PKCS#8 PEM; ``now`` is the signing
        clock (default: the wall clock) and ``sleep`` the backoff between retries."""
        self._key_id = key_id
        self._key = (
            private_key
            if isinstance(private_key, Ed25519PrivateKey)
            else signing.load_private_key(private_key)
        )
        self._retries = retries
        self._now = now
        self._sleep = sleep
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)

    @classmethod
    def from_key_file(cls, base_url: str, key_id: str, path: Path | str, **kw: Any) -> Self:
        return cls(base_url, key_id, Path(path).read_bytes(), **kw)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- allocator ----------------------------------------------------------------

    def create_commitment(
        self,
        *,
        deal_ref: str,
        amount: str,
        currency: str,
        counterparty: str | None = None,
        expires_at: datetime | None = None,
        commitment_id: UUID | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Create a DRAFT commitment. ``amount`` is a decimal string (never a float)."""
        if not isinstance(amount, str):
            raise TypeError("amount must be a decimal string")
        body: dict[str, Any] = {"deal_ref": deal_ref, "amount": amount, "currency": currency}
        if counterparty is not None:
            body["counterparty"] = counterparty
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat()
        if commitment_id is not None:
            body["commitment_id"] = str(commitment_id)
        return self._write("/commitments", body, idempotency_key=idempotency_key)

    def get_commitment(self, commitment_id: UUID | str) -> dict[str, Any]:
        return self._read(f"/commitments/{commitment_id}")

    def submit(
        self, commitment_id: UUID | str, *, expected_version: int, **kw: Any
    ) -> dict[str, Any]:
        return self._event(f"/commitments/{commitment_id}/submit", expected_version, {}, **kw)

    def withdraw(
        self,
        commitment_id: UUID | str,
        *,
        expected_version: int,
        reason: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        extra = {"reason": reason} if reason is not None else {}
        return self._event(f"/commitments/{commitment_id}/withdraw", expected_version, extra, **kw)

    def audit_trail(self, commitment_id: UUID | str) -> list[dict[str, Any]]:
        return self._read_list(f"/commitments/{commitment_id}/audit")

    def list_commitments(
        self,
        *,
        state: str | None = None,
        party: str | None = None,
        deal_ref: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page: ``{"items": [...], "next_cursor": str | None}``. An allocator's
        key sees only its own party's commitments."""
        params = {
            k: v
            for k, v in (
                ("state", state),
                ("party", party),
                ("deal_ref", deal_ref),
                ("limit", limit),
                ("cursor", cursor),
            )
            if v is not None
        }
        return self._read("/commitments", params=params)

    def iter_commitments(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every commitment matching ``filters`` (as ``list_commitments``), page by page."""
        cursor: str | None = None
        while True:
            page = self.list_commitments(cursor=cursor, **filters)
            yield from page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def start_settlement(
        self,
        commitment_id: UUID | str,
        *,
        legs: list[Mapping[str, Any]],
        commit_deadline: datetime,
        settle_not_before: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Fund a VERIFIED commitment with its settlement instruction. Each leg is
        ``{"kind": "principal"|"fee", "chain": "xrpl"|"stellar", "asset": {"code": ...,
        "issuer": ...}, "amount": "<decimal string>", "sender": ..., "receiver": ...}``."""
        for leg in legs:
            if not isinstance(leg.get("amount"), str):
                raise TypeError("leg amounts must be decimal strings")
        body: dict[str, Any] = {
            "legs": [dict(leg) for leg in legs],
            "commit_deadline": commit_deadline.isoformat(),
        }
        if settle_not_before is not None:
            body["settle_not_before"] = settle_not_before.isoformat()
        return self._write(
            f"/commitments/{commitment_id}/settlement", body, idempotency_key=idempotency_key
        )

    def get_settlement(self, commitment_id: UUID | str) -> dict[str, Any]:
        """The commitment's latest settlement with its legs and ledger submissions."""
        return self._read(f"/commitments/{commitment_id}/settlement")

    def ledger_references(self, commitment_id: UUID | str) -> list[dict[str, Any]]:
        return self._read_list(f"/commitments/{commitment_id}/ledger-references")

    # -- admin --------------------------------------------------------------------

    def settlements(
        self,
        *,
        needs_review: bool | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if needs_review is not None:
            params["needs_review"] = "true" if needs_review else "false"
        if status is not None:
            params["status"] = status
        if limit is not None:
            params["limit"] = limit
        return self._read_list("/settlements", params=params)

    def force_cancel(
        self, settlement_id: UUID | str, *, reason: str, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._write(
            f"/settlements/{settlement_id}/force-cancel",
            {"reason": reason},
            idempotency_key=idempotency_key,
        )

    def retry_settlement(
        self, settlement_id: UUID | str, *, note: str, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._write(
            f"/settlements/{settlement_id}/retry", {"note": note}, idempotency_key=idempotency_key
        )

    def resolve_settlement(
        self, settlement_id: UUID | str, *, note: str, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._write(
            f"/settlements/{settlement_id}/resolve",
            {"note": note},
            idempotency_key=idempotency_key,
        )

    def breakers(self) -> dict[str, Any]:
        """``{"breakers": [...per scope and chain...], "recent_resets": [...]}``."""
        return self._read("/breakers")

    def reset_breaker(self, chain: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        return self._write(f"/breakers/{chain}/reset", {}, idempotency_key=idempotency_key)

    # -- parties ------------------------------------------------------------------

    def parties(self) -> list[dict[str, Any]]:
        return self._read_list("/parties")

    def party(self, party: str) -> dict[str, Any]:
        """``{"kyc": {...}, "accounts": [...]}``."""
        return self._read(f"/parties/{party}")

    def create_kyc(
        self, party: str, *, idempotency_key: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Fields: legal_name, jurisdiction, risk_rating, accredited, status, and
        optionally expires_on (``YYYY-MM-DD``), aliases, lei, registration_number."""
        return self._write(f"/parties/{party}/kyc", fields, idempotency_key=idempotency_key)

    def update_kyc(
        self,
        party: str,
        *,
        expected_version: int,
        idempotency_key: str | None = None,
        **changes: Any,
    ) -> dict[str, Any]:
        body = {"expected_version": expected_version, **changes}
        return self._write(
            f"/parties/{party}/kyc", body, idempotency_key=idempotency_key, method="PATCH"
        )

    def register_account(
        self, party: str, *, chain: str, address: str, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._write(
            f"/parties/{party}/accounts",
            {"chain": chain, "address": address},
            idempotency_key=idempotency_key,
        )

    def balances(self, party: str) -> dict[str, Any]:
        """The party's positions: per account and asset the ledger's side and the
        engine's, with breaks; ``totals`` per currency."""
        return self._read(f"/parties/{party}/balances")

    def statement(self, party: str, *, since: str, until: str) -> dict[str, Any]:
        """The party's statement of ``[since, until)`` (ISO-8601 times or dates)."""
        return self._read(f"/parties/{party}/statement", params={"from": since, "to": until})

    def statement_csv(self, party: str, *, since: str, until: str) -> str:
        """The same statement as CSV text; ``ApiError`` for a refusal."""
        params = {"from": since, "to": until, "format": "csv"}
        response = self._exchange("GET", f"{API_PREFIX}/parties/{party}/statement", params=params)
        if not response.is_success:
            _result(response)  # raises the problem as ApiError
        return response.text

    # -- webhooks -----------------------------------------------------------------

    def add_webhook(
        self,
        url: str,
        event_types: list[str],
        *,
        party: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Register an endpoint (an allocator's is its party's; an admin names a party,
        or none for every party)."""
        body: dict[str, Any] = {"url": url, "event_types": event_types}
        if party is not None:
            body["party"] = party
        return self._write("/webhooks/endpoints", body, idempotency_key=idempotency_key)

    def webhooks(self, *, party: str | None = None) -> list[dict[str, Any]]:
        params = {"party": party} if party is not None else None
        return self._read_list("/webhooks/endpoints", params=params)

    def disable_webhook(
        self, endpoint_id: UUID | str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        path = f"/webhooks/endpoints/{endpoint_id}/disable"
        return self._write(path, {}, idempotency_key=idempotency_key)

    def webhook_deliveries(
        self, endpoint_id: UUID | str, *, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status
        return self._read_list(f"/webhooks/endpoints/{endpoint_id}/deliveries", params=params)

    def replay_webhooks(
        self,
        endpoint_id: UUID | str,
        delivery_ids: list[int] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Deliver the endpoint's dead deliveries again (those named, else all)."""
        body = {"delivery_ids": delivery_ids} if delivery_ids is not None else {}
        path = f"/webhooks/endpoints/{endpoint_id}/replay"
        return self._write(path, body, idempotency_key=idempotency_key)

    def webhook_keys(self) -> dict[str, Any]:
        """The engine's webhook public keys (an unsigned route)."""
        return self._read("/webhooks/keys")

    # -- operations (unsigned routes; signing them is harmless) ---------------------

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether ``/readyz`` says ready, and its per-check detail (200 and 503 alike)."""
        response = self._http.get("/readyz")
        body = strict_json.loads(response.content)
        if response.status_code not in (200, 503) or not isinstance(body, dict):
            raise ApiError(response.status_code, body if isinstance(body, dict) else {})
        return response.status_code == 200, body

    def metrics_text(self) -> str:
        response = self._http.get("/metrics")
        if not response.is_success:
            raise ApiError(response.status_code, {"detail": response.text})
        return response.text

    # -- compliance officer -------------------------------------------------------

    def review_queue(self, *, limit: int = 100) -> list[dict[str, Any]]:
        return self._read_list("/review", params={"limit": limit})

    def review_detail(self, commitment_id: UUID | str) -> dict[str, Any]:
        return self._read(f"/review/{commitment_id}")

    def approve(
        self,
        commitment_id: UUID | str,
        *,
        expected_version: int,
        override_reason: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        extra = {"override_reason": override_reason} if override_reason is not None else {}
        return self._event(f"/review/{commitment_id}/approve", expected_version, extra, **kw)

    def reject(
        self, commitment_id: UUID | str, *, expected_version: int, reason: str, **kw: Any
    ) -> dict[str, Any]:
        return self._event(
            f"/review/{commitment_id}/reject", expected_version, {"reason": reason}, **kw
        )

    def request_info(
        self, commitment_id: UUID | str, *, expected_version: int, reason: str, **kw: Any
    ) -> dict[str, Any]:
        return self._event(
            f"/review/{commitment_id}/request-info", expected_version, {"reason": reason}, **kw
        )

    # -- auditor ------------------------------------------------------------------

    def verify_audit(self, *, ledgers: bool = False, anchors: bool = False) -> dict[str, Any]:
        """Recompute every chain; with ``ledgers`` also check every ledger reference; with
        ``anchors`` also every audit anchor (the answer's ``anchors``)."""
        asked = {"ledgers": ledgers, "anchors": anchors}
        params = {name: "true" for name, on in asked.items() if on}
        return self._read("/audit/verify", params=params or None)

    # -- transport ----------------------------------------------------------------

    def _event(
        self,
        path: str,
        expected_version: int,
        extra: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body = {"expected_version": expected_version, **extra}
        return self._write(path, body, idempotency_key=idempotency_key)

    def _read(self, path: str, *, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        result = self.request("GET", API_PREFIX + path, params=params)
        assert isinstance(result, dict)
        return result

    def _read_list(
        self, path: str, *, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        result = self.request("GET", API_PREFIX + path, params=params)
        assert isinstance(result, list)
        return result

    def _write(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        idempotency_key: str | None,
        method: str = "POST",
    ) -> dict[str, Any]:
        key = idempotency_key or str(uuid.uuid4())
        result = self.request(method, API_PREFIX + path, json=body, idempotency_key=key)
        assert isinstance(result, dict)
        return result

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one signed request (retrying as the module says); its JSON body."""
        return _result(
            self._exchange(
                method,
                path,
                json=json,
                params=params,
                idempotency_key=idempotency_key,
                headers=headers,
            )
        )

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one signed request, retrying as the module says; the last response."""
        extra = dict(headers or {})
        if idempotency_key is not None:
            extra["Idempotency-Key"] = idempotency_key
        attempt = 0
        while True:
            request = self._http.build_request(
                method, path, json=json, params=dict(params or {}), headers=extra
            )
            signing.sign_request(
                request,
                key_id=self._key_id,
                private_key=self._key,
                created=self._now() if self._now else None,
            )
            try:
                response = self._http.send(request)
            except httpx.TransportError:
                if attempt >= self._retries:
                    raise
            else:
                if not _in_flight(response) or attempt >= self._retries:
                    return response
            self._sleep(min(_RETRY_MAX_S, _RETRY_BASE_S * 2**attempt))
            attempt += 1


def _in_flight(response: httpx.Response) -> bool:
    if response.status_code != 409:
        return False
    try:
        problem = strict_json.loads(response.content)
    except ValueError:
        return False
    return isinstance(problem, dict) and problem.get("code") == "request_in_flight"


def _result(response: httpx.Response) -> Any:
    if response.is_success:
        return strict_json.loads(response.content)
    try:
        problem = strict_json.loads(response.content)
    except ValueError:
        problem = {"detail": response.text}
    if not isinstance(problem, dict):
        problem = {"detail": str(problem)}
    raise ApiError(response.status_code, problem)
