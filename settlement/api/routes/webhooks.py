"""Webhooks: endpoints an allocator (for its party) or an admin (for any party, or all)
registers, lists, disables and replays; and the engine's public keys.

Every delivery is signed by the engine (RFC 9421, Ed25519, as requests to this API are);
``GET /v1/webhooks/keys`` serves the public keys, unsigned, so a receiver can fetch
them without an API key. An allocator never sees or touches another party's endpoints,
nor the every-party endpoints of admins (403). Bad input (not a URL, a scheme other
than http(s), http or a local address outside the local network, an unknown event type)
is a 422 problem and nothing is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ledger.webhooks import DeliveryRecord, DeliveryStatus, EndpointRecord, EventType
from settlement import bootstrap
from settlement.api.deps import (
    API_PREFIX,
    READ_ERRORS,
    WRITE_ERRORS,
    AllocatorOrAdmin,
    EngineDep,
    IdempotencyKey,
)
from settlement.api.strict import StrictJsonRoute
from settlement.domain import errors
from settlement.settings import SettingsError

router = APIRouter(route_class=StrictJsonRoute)
WEBHOOKS = f"{API_PREFIX}/webhooks"
KEYS_PATH = f"{WEBHOOKS}/keys"
ENDPOINT = f"{WEBHOOKS}/endpoints/{{endpoint_id}}"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EndpointCreate(_Request):
    url: Annotated[str, Field(min_length=1, max_length=2048, examples=["https://example.com/h"])]
    event_types: Annotated[
        list[str],
        Field(min_length=1, max_length=len(EventType), description=", ".join(EventType)),
    ]
    #: an allocator's endpoint is its party's; an admin names one, or none for every party
    party: Annotated[str | None, Field(min_length=1, max_length=200)] = None


class ReplayBody(_Request):
    #: the dead deliveries to replay; none: every dead delivery of the endpoint
    delivery_ids: Annotated[list[int] | None, Field(max_length=1000)] = None


class EndpointOut(BaseModel):
    id: UUID
    party: str | None
    url: str
    event_types: list[str]
    active: bool
    created_by: str
    created_at: datetime
    disabled_at: datetime | None

    @classmethod
    def of(cls, r: EndpointRecord) -> EndpointOut:
        return cls(
            id=r.id,
            party=r.party,
            url=r.url,
            event_types=list(r.event_types),
            active=r.active,
            created_by=r.created_by,
            created_at=r.created_at,
            disabled_at=r.disabled_at,
        )


class DeliveryOut(BaseModel):
    id: int
    event_id: UUID
    event_type: str
    commitment_id: UUID
    sequence: int
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None

    @classmethod
    def of(cls, r: DeliveryRecord) -> DeliveryOut:
        return cls(
            id=r.id,
            event_id=r.event_id,
            event_type=r.event_type,
            commitment_id=r.commitment_id,
            sequence=r.audit_seq,
            status=r.status,
            attempts=r.attempts,
            next_attempt_at=r.next_attempt_at,
            last_status=r.last_status,
            last_error=r.last_error,
            delivered_at=r.delivered_at,
        )


class ReplayOut(BaseModel):
    replayed: list[int]


class PublicKeyOut(BaseModel):
    kid: str
    alg: str
    #: the raw 32-byte Ed25519 public key, base64url without padding
    public_key: str


class KeysOut(BaseModel):
    keys: list[PublicKeyOut]


@router.get(KEYS_PATH, response_model=KeysOut, tags=["webhooks"])
def webhook_keys(engine: EngineDep) -> dict[str, Any]:
    """The engine's webhook signing keys (unsigned): a delivery's ``keyid`` names one.
    503 when the engine has no signing key configured (outside the local network)."""
    try:
        key = bootstrap.webhook_key(engine.settings)
    except SettingsError as exc:
        raise errors.EngineUnavailable(f"no webhook signing key: {exc}") from exc
    return key.public_document()


@router.post(
    f"{WEBHOOKS}/endpoints",
    status_code=201,
    response_model=EndpointOut,
    responses=WRITE_ERRORS,
    tags=["webhooks"],
)
def register_endpoint(
    body: EndpointCreate, engine: EngineDep, actor: AllocatorOrAdmin, key: IdempotencyKey
) -> EndpointOut:
    """Register an endpoint for the event types named; deliveries start with the next
    change. 422 for a URL or event type refused (nothing stored)."""
    created = engine.webhooks.register(
        actor, url=body.url, event_types=body.event_types, party=body.party
    )
    return EndpointOut.of(created)


@router.get(
    f"{WEBHOOKS}/endpoints",
    response_model=list[EndpointOut],
    responses=READ_ERRORS,
    tags=["webhooks"],
)
def list_endpoints(
    engine: EngineDep,
    actor: AllocatorOrAdmin,
    party: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> list[EndpointOut]:
    """Endpoints: an allocator's own party's (another party is 403); an admin's all, or
    one party's."""
    return [EndpointOut.of(r) for r in engine.webhooks.endpoints(actor, party=party)]


@router.post(
    f"{ENDPOINT}/disable",
    response_model=EndpointOut,
    responses=WRITE_ERRORS,
    tags=["webhooks"],
)
def disable_endpoint(
    endpoint_id: UUID, engine: EngineDep, actor: AllocatorOrAdmin, key: IdempotencyKey
) -> EndpointOut:
    """Stop delivering to the endpoint (its pending deliveries wait, unattempted)."""
    return EndpointOut.of(engine.webhooks.disable(actor, endpoint_id))


@router.get(
    f"{ENDPOINT}/deliveries",
    response_model=list[DeliveryOut],
    responses=READ_ERRORS,
    tags=["webhooks"],
)
def list_deliveries(
    endpoint_id: UUID,
    engine: EngineDep,
    actor: AllocatorOrAdmin,
    status: Annotated[Literal["pending", "delivered", "dead"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryOut]:
    """The endpoint's deliveries, newest first; ``status=dead`` lists its dead letters."""
    chosen = DeliveryStatus(status) if status is not None else None
    found = engine.webhooks.deliveries(actor, endpoint_id, status=chosen, limit=limit)
    return [DeliveryOut.of(d) for d in found]


@router.post(
    f"{ENDPOINT}/replay",
    response_model=ReplayOut,
    responses=WRITE_ERRORS,
    tags=["webhooks"],
)
def replay_dead_letters(
    endpoint_id: UUID,
    body: ReplayBody,
    engine: EngineDep,
    actor: AllocatorOrAdmin,
    key: IdempotencyKey,
) -> ReplayOut:
    """Deliver the endpoint's dead deliveries again (those named, else all), with fresh
    attempts; later events of their commitments follow them in order."""
    return ReplayOut(replayed=engine.webhooks.replay(actor, endpoint_id, body.delivery_ids))
