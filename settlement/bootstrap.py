"""The composition root: the one place that builds infrastructure from settings.

Entry points (CLI, API, worker, demo) and tests call ``build``; nothing else constructs
database engines, clocks or services.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from adapters.chain import Chain, ChainName
from adapters.keystore import KeystoreFile
from adapters.resilience import ChainGuard
from adapters.stellar import StellarChain
from adapters.xrpl import XrplChain
from compliance.errors import PolicyError
from compliance.policy import ScreeningPolicy, load_policy
from compliance.records import SanctionsIndexCache
from ledger import embedded, migrate
from ledger.database import Database, app_url_for, normalise_url
from ledger.errors import DatabaseUnavailable, translate
from settlement.clock import Clock, SystemClock
from settlement.dvp import DvpCoordinator, DvpPolicy
from settlement.sealing import Sealer, local_key
from settlement.services.commitments import CommitmentService
from settlement.services.compliance import ComplianceService
from settlement.services.settlements import SettlementDesk
from settlement.settings import Settings, SettingsError, load_settings


@dataclass(frozen=True)
class DatabaseUrls:
    owner: str
    app: str


@dataclass
class Engine:
    settings: Settings
    clock: Clock
    urls: DatabaseUrls
    db: Database
    commitments: CommitmentService
    compliance: ComplianceService
    settlements: SettlementDesk

    def close(self) -> None:
        self.db.dispose()


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(message)s")
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(settings.log_level)
        ),
    )


def database_urls(settings: Settings, *, start_embedded: bool = True) -> DatabaseUrls:
    """Owner and application URLs: the configured server, or the embedded one.

    For the embedded server this starts it (or attaches to it) and creates the
    database named by ``embedded_database`` when missing.
    """
    password = settings.app_password.get_secret_value() if settings.app_password else None
    if not settings.uses_embedded_database:
        owner = normalise_url(settings.database_url)
        app = (
            normalise_url(settings.app_database_url)
            if settings.app_database_url
            else app_url_for(owner, password)
        )
        return DatabaseUrls(owner=owner, app=app)
    if not start_embedded and not embedded.is_running(settings.data_dir):
        raise DatabaseUnavailable(
            f"the embedded database in {settings.data_dir} is not running; run `settle db up`"
        )
    server = embedded.ensure_running(settings.data_dir)
    ensure_database(server.url(), settings.embedded_database)
    owner = server.url(settings.embedded_database)
    return DatabaseUrls(owner=owner, app=app_url_for(owner, password))


def ensure_database(maintenance_url: str, name: str) -> None:
    engine = create_engine(normalise_url(maintenance_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if exists is None:
                connection.execute(
                    text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0")
                )
    except SQLAlchemyError as exc:
        raise translate(exc) from exc
    finally:
        engine.dispose()


def screening_policy(settings: Settings) -> ScreeningPolicy:
    """The screening policy from settings and the policy files; ``SettingsError`` if bad."""
    try:
        return load_policy(
            match_threshold=settings.sanctions_match_threshold,
            four_eyes_threshold=settings.four_eyes_threshold,
            jurisdictions_file=settings.config_path(settings.jurisdictions_file),
            limits_file=settings.config_path(settings.limits_file),
        )
    except PolicyError as exc:
        raise SettingsError(f"compliance policy: {exc}") from exc


def migrate_database(settings: Settings, urls: DatabaseUrls) -> str:
    password = settings.app_password.get_secret_value() if settings.app_password else None
    return migrate.upgrade(urls.owner, app_password=password)


def build(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    urls: DatabaseUrls | None = None,
) -> Engine:
    """Build the engine. Refuses to start on a database that is not at the head revision,
    or with a bad screening policy (``SettingsError``)."""
    settings = settings or load_settings()
    policy = screening_policy(settings)
    urls = urls or database_urls(settings)
    current = migrate.current_revision(urls.app)
    head = migrate.head_revision()
    if current != head:
        raise DatabaseUnavailable(
            f"database schema is at {current or 'nothing'}, the engine needs {head}; "
            "run `settle db migrate`"
        )
    db = Database(urls.app, pool_size=settings.pool_size)
    clock = clock or SystemClock()
    return Engine(
        settings=settings,
        clock=clock,
        urls=urls,
        db=db,
        commitments=CommitmentService(
            db,
            clock,
            policy=policy,
            lists=SanctionsIndexCache(),
            reason_max_chars=settings.reason_max_chars,
        ),
        compliance=ComplianceService(db, clock),
        settlements=SettlementDesk(db, clock, reason_max_chars=settings.reason_max_chars),
    )


# -- chains, keystore and the DVP coordinator -------------------------------------------


def _fernet_key(settings: Settings, configured: SecretStr | None, name: str) -> bytes:
    if configured is not None:
        return configured.get_secret_value().encode()
    if settings.network != "local":
        raise SettingsError(
            f"SETTLEMENT_{name.upper()}_KEY: required on the {settings.network} network"
        )
    return local_key(settings.data_dir, name=name)


def keystore_file(settings: Settings) -> KeystoreFile:
    path = settings.keystore_file
    if not path.is_absolute():
        path = settings.data_dir / path
    return KeystoreFile(path, _fernet_key(settings, settings.keystore_key, "keystore"))


def build_chains(
    settings: Settings, guards: Mapping[ChainName, ChainGuard] | None = None
) -> dict[ChainName, Chain]:
    """The XRPL and Stellar adapters from settings, signing with the keystore file;
    each behind its guard from ``guards`` (a fresh ``ChainGuard`` when not given)."""
    guards = guards or {}
    if not settings.xrpl_agent or not settings.stellar_agent:
        raise SettingsError(
            "SETTLEMENT_XRPL_AGENT and SETTLEMENT_STELLAR_AGENT: the settlement agents are required"
        )
    signer = keystore_file(settings).load()
    return {
        ChainName.XRPL: XrplChain(
            settings.xrpl_url,
            agent=settings.xrpl_agent,
            signer=signer,
            guard=guards.get(ChainName.XRPL) or ChainGuard("xrpl"),
            use_tickets=settings.xrpl_use_tickets,
        ),
        ChainName.STELLAR: StellarChain(
            settings.horizon_url,
            settings.stellar_network_passphrase,
            agent=settings.stellar_agent,
            signer=signer,
            guard=guards.get(ChainName.STELLAR) or ChainGuard("stellar"),
            channels=settings.stellar_channel_accounts,
            max_fee_per_op_stroops=settings.stellar_max_fee_per_op_stroops,
        ),
    }


def build_coordinator(
    engine: Engine, chains: dict[ChainName, Chain] | None = None
) -> DvpCoordinator:
    settings = engine.settings
    return DvpCoordinator(
        engine.db,
        service=engine.commitments,
        chains=chains if chains is not None else build_chains(settings),
        sealer=Sealer(_fernet_key(settings, settings.sealing_key, "sealing")),
        clock=engine.clock,
        accounts=engine.compliance,
        policy=dvp_policy(settings),
    )


def dvp_policy(settings: Settings) -> DvpPolicy:
    """The DVP timing from settings (validated there: the send margin below the safety
    margin)."""
    return DvpPolicy(
        safety_margin_s=settings.dvp_safety_margin_s,
        commit_send_margin_s=settings.dvp_commit_send_margin_s,
        review_before_cancel_s=settings.dvp_review_before_cancel_s,
        min_window_s=settings.dvp_min_window_s,
    )


@dataclass
class Ledgers:
    """What a process that talks to ledgers holds: the adapters, the breaker of each
    (to publish and reset, ``settlement.breakers``) and the coordinator over them."""

    chains: dict[ChainName, Chain]
    guards: dict[ChainName, ChainGuard]
    coordinator: DvpCoordinator

    def close(self) -> None:
        for chain in self.chains.values():
            closer = getattr(chain, "close", None)
            if closer is not None:
                closer()


def build_ledgers(engine: Engine) -> Ledgers:
    """Both chains from the engine's settings, their guards and the coordinator.

    Raises ``SettingsError`` when the settlement agents or the keys are not configured.
    """
    guards = {ChainName.XRPL: ChainGuard("xrpl"), ChainName.STELLAR: ChainGuard("stellar")}
    chains = build_chains(engine.settings, guards)
    return Ledgers(chains=chains, guards=guards, coordinator=build_coordinator(engine, chains))
