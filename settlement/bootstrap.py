"""The composition root: the one place that builds infrastructure.

Entry points (CLI, API, worker, demo), benchmarks and tests call these; nothing else
constructs database engines, clocks, services, keystores, ledger adapters and their
breakers, DVP coordinators, workers or the local world:

- ``build``: the database and the services over it, from settings;
- ``build_chains`` / ``build_xrpl_chain`` / ``build_ledgers``: the ledger adapters from
  settings, signing with the keystore file; ``chains_on``: the same adapters on networks
  named by URL, signing with keys held in memory;
- ``build_coordinator``; ``build_worker`` (what ``settle worker`` runs, with its expiry
  sweep, breaker publishing and ticket top-ups) and ``build_stepping_worker`` (one that
  only steps settlements);
- ``local_world``: both local networks started in this process (or reached where they
  run), provisioned with the demo's accounts and assets, with adapters over them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from pydantic import SecretStr

from adapters.chain import Anchoring, Chain, ChainName
from adapters.keystore import KeystoreFile
from adapters.resilience import ChainGuard, ResiliencePolicy
from adapters.signing import InMemoryKeystore, Signer
from adapters.stellar import StellarChain
from adapters.xrpl import XrplChain
from compliance.errors import PolicyError
from compliance.policy import ScreeningPolicy, load_policy
from compliance.records import SanctionsIndexCache
from ledger import embedded, migrate
from ledger.database import Database, app_url_for, normalise_url
from ledger.errors import DatabaseUnavailable
from settlement.breakers import BreakerBoard
from settlement.clock import Clock, OffsetClock, SystemClock
from settlement.dvp import DvpCoordinator, DvpPolicy
from settlement.dvp.tickets import TicketKeeper, describe, top_up_tickets
from settlement.dvp.worker import Worker, WorkerPolicy
from settlement.sealing import Sealer, local_key
from settlement.services.anchors import Anchorer, AnchorLoop
from settlement.services.commitments import CommitmentService
from settlement.services.compliance import ComplianceService
from settlement.services.positions import PositionService
from settlement.services.settlements import SettlementDesk
from settlement.services.webhooks import (
    DeliveryPolicy,
    DeliveryWorker,
    WebhookDesk,
    WebhookKey,
    key_from_text,
)
from settlement.services.webhooks import local_key as local_webhook_key
from settlement.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from stellar_sdk import Keypair
    from xrpl.wallet import Wallet

    from adapters.localnet.provision import StellarProvisioner, XrplProvisioner
    from adapters.localnet.stellar import StellarNode
    from adapters.localnet.xrpl import XrplNode
    from settlement.demo.world import LocalWorld, NetworkUrls, WorldAccounts


@dataclass(frozen=True)
class DatabaseUrls:
    owner: str
    app: str


@dataclass
class Services:
    settings: Settings
    clock: Clock
    urls: DatabaseUrls
    db: Database
    commitments: CommitmentService
    compliance: ComplianceService
    settlements: SettlementDesk
    positions: PositionService
    webhooks: WebhookDesk

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
    migrate.ensure_database(server.url(), settings.embedded_database)
    owner = server.url(settings.embedded_database)
    return DatabaseUrls(owner=owner, app=app_url_for(owner, password))


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
) -> Services:
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
    return Services(
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
        webhooks=WebhookDesk(db, clock, local_network=settings.network == "local"),
        positions=PositionService(db, clock),
    )


# -- keystore and chains ------------------------------------------------------------------


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
    return keystore_at(path, _fernet_key(settings, settings.keystore_key, "keystore"))


def keystore_at(path: Path, key: bytes) -> KeystoreFile:
    """The encrypted keystore file at ``path``, opened with the Fernet ``key`` (the file
    is written when the first key is added); ``KeystoreError`` for a key that is not a
    Fernet key."""
    return KeystoreFile(path, key)


def keystore_holding(xrpl: Iterable[Wallet], stellar: Iterable[Keypair]) -> InMemoryKeystore:
    """A keystore in memory holding these keys (the local world's, a test worker's)."""
    return InMemoryKeystore(stellar=list(stellar), xrpl=list(xrpl))


def chain_guards(policy: ResiliencePolicy | None = None) -> dict[ChainName, ChainGuard]:
    """A fresh circuit breaker and retry policy per chain (``policy``, or the default)."""
    return {
        ChainName.XRPL: ChainGuard("xrpl", policy),
        ChainName.STELLAR: ChainGuard("stellar", policy),
    }


def _configured_chains(
    settings: Settings, guards: Mapping[ChainName, ChainGuard]
) -> tuple[XrplChain, StellarChain]:
    if not settings.xrpl_agent or not settings.stellar_agent:
        raise SettingsError(
            "SETTLEMENT_XRPL_AGENT and SETTLEMENT_STELLAR_AGENT: the settlement agents are required"
        )
    signer = keystore_file(settings).load()
    xrpl = XrplChain(
        settings.xrpl_url,
        agent=settings.xrpl_agent,
        signer=signer,
        guard=guards.get(ChainName.XRPL) or ChainGuard("xrpl"),
        use_tickets=settings.xrpl_use_tickets,
    )
    stellar = StellarChain(
        settings.horizon_url,
        settings.stellar_network_passphrase,
        agent=settings.stellar_agent,
        signer=signer,
        guard=guards.get(ChainName.STELLAR) or ChainGuard("stellar"),
        channels=settings.stellar_channel_accounts,
        max_fee_per_op_stroops=settings.stellar_max_fee_per_op_stroops,
    )
    return xrpl, stellar


def build_chains(
    settings: Settings, guards: Mapping[ChainName, ChainGuard] | None = None
) -> dict[ChainName, Chain]:
    """The XRPL and Stellar adapters from settings, signing with the keystore file;
    each behind its guard from ``guards`` (a fresh ``ChainGuard`` when not given)."""
    xrpl, stellar = _configured_chains(settings, guards or {})
    return {ChainName.XRPL: xrpl, ChainName.STELLAR: stellar}


def reading_chains(settings: Settings) -> dict[ChainName, Chain]:
    """The XRPL and Stellar adapters for reading only: an auditor's checks of ledger
    references and anchors need the ledgers' URLs and nothing else of the engine (no
    agents, no keystore). They hold no key, so any attempt to sign fails. An adapter is
    built around one account of the engine's; without the agent's, the anchor account's
    serves (a reader only reads it)."""
    return chains_on(
        settings.xrpl_url,
        settings.horizon_url,
        settings.stellar_network_passphrase,
        xrpl_agent=settings.xrpl_agent or settings.xrpl_anchor_account,
        stellar_agent=settings.stellar_agent or settings.stellar_anchor_account,
        signer=InMemoryKeystore(),
        guards=chain_guards(),
    )


def build_xrpl_chain(settings: Settings) -> XrplChain:
    """The XRPL adapter from settings, for account set-up (``settle xrpl tickets``).
    Settings are checked as ``build_chains`` checks them (both agents, the keystore), so
    this refuses what a worker would refuse."""
    xrpl, stellar = _configured_chains(settings, {})
    stellar.close()
    return xrpl


def _chain_pair(
    xrpl_url: str,
    horizon_url: str,
    stellar_network_passphrase: str,
    *,
    xrpl_agent: str,
    stellar_agent: str,
    signer: Signer,
    guards: Mapping[ChainName, ChainGuard],
    stellar_channels: Sequence[str],
) -> tuple[XrplChain, StellarChain]:
    xrpl = XrplChain(xrpl_url, agent=xrpl_agent, signer=signer, guard=guards[ChainName.XRPL])
    stellar = StellarChain(
        horizon_url,
        stellar_network_passphrase,
        agent=stellar_agent,
        signer=signer,
        guard=guards[ChainName.STELLAR],
        channels=stellar_channels,
    )
    return xrpl, stellar


def chains_on(
    xrpl_url: str,
    horizon_url: str,
    stellar_network_passphrase: str,
    *,
    xrpl_agent: str,
    stellar_agent: str,
    signer: Signer,
    guards: Mapping[ChainName, ChainGuard],
    stellar_channels: Sequence[str] = (),
) -> dict[ChainName, Chain]:
    """Both adapters on networks named by URL, signing with ``signer`` (keys held in
    memory), each behind its guard of ``guards``: the local world's, a benchmark's or a
    test worker's. Every other option is the adapters' default (XRPL Tickets used when
    the signer holds some; no Stellar channel accounts unless given)."""
    xrpl, stellar = _chain_pair(
        xrpl_url,
        horizon_url,
        stellar_network_passphrase,
        xrpl_agent=xrpl_agent,
        stellar_agent=stellar_agent,
        signer=signer,
        guards=guards,
        stellar_channels=stellar_channels,
    )
    return {ChainName.XRPL: xrpl, ChainName.STELLAR: stellar}


# -- the DVP coordinator and workers --------------------------------------------------------


def sealer(settings: Settings) -> Sealer:
    """The sealer of hash-lock secrets: the configured key, or the local network's own."""
    return Sealer(_fernet_key(settings, settings.sealing_key, "sealing"))


def build_coordinator(
    engine: Services,
    chains: Mapping[ChainName, Chain] | None = None,
    *,
    clock: Clock | None = None,
    policy: DvpPolicy | None = None,
    sealed_with: Sealer | None = None,
    check_owners: bool = True,
) -> DvpCoordinator:
    """The coordinator over ``chains`` (by default the adapters from settings), on the
    engine's clock, DVP timing from settings and sealing key unless given. With
    ``check_owners`` an instruction's ledger accounts must be registered to the
    commitment's parties; a benchmark or a test whose accounts are nobody's turns it off."""
    settings = engine.settings
    return DvpCoordinator(
        engine.db,
        service=engine.commitments,
        chains=chains if chains is not None else build_chains(settings),
        sealer=sealed_with if sealed_with is not None else sealer(settings),
        clock=clock or engine.clock,
        accounts=engine.compliance if check_owners else None,
        policy=policy or dvp_policy(settings),
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


def build_ledgers(engine: Services) -> Ledgers:
    """Both chains from the engine's settings, their guards and the coordinator.

    Raises ``SettingsError`` when the settlement agents or the keys are not configured.
    """
    guards = chain_guards()
    chains = build_chains(engine.settings, guards)
    return Ledgers(chains=chains, guards=guards, coordinator=build_coordinator(engine, chains))


def anchor_accounts(settings: Settings) -> dict[ChainName, str]:
    """The anchor account per ledger the settings name (a ledger without one is absent):
    where anchors are published, and whose history a verifier reads."""
    named = {
        ChainName.XRPL: settings.xrpl_anchor_account,
        ChainName.STELLAR: settings.stellar_anchor_account,
    }
    return {name: account for name, account in named.items() if account}


def build_anchorer(engine: Services) -> Anchorer | None:
    """The audit anchorer of the settings' anchor accounts, on ledgers of its own (own
    breakers: an anchor ledger's trouble never opens a settlement breaker); None when
    no anchor account is configured. Raises ``SettingsError`` when the chains cannot be
    built (agents, keystore)."""
    settings = engine.settings
    accounts = anchor_accounts(settings)
    if not accounts:
        return None
    chains = build_chains(settings)
    anchoring = {name: c for name, c in chains.items() if isinstance(c, Anchoring)}
    return Anchorer(engine.db, anchoring, accounts, engine.clock, settle_s=settings.anchor_settle_s)


def build_anchor_loop(engine: Services) -> AnchorLoop | None:
    """Periodic anchoring for a long-running worker, as the settings ask
    (``anchor_interval_s``, ``anchor_every_entries``; 0 turns each off); None when no
    anchor account is configured or both triggers are off."""
    settings = engine.settings
    if not settings.anchor_interval_s and not settings.anchor_every_entries:
        return None
    anchorer = build_anchorer(engine)
    if anchorer is None:
        return None
    return AnchorLoop(
        anchorer,
        every_s=settings.anchor_interval_s or None,
        every_entries=settings.anchor_every_entries or None,
    )


def webhook_key(settings: Settings) -> WebhookKey:
    """The engine's webhook signing key: ``webhook_signing_key``, else (local network
    only) one kept under data_dir; ``SettingsError`` otherwise."""
    configured = settings.webhook_signing_key
    if configured is not None:
        try:
            return key_from_text(configured.get_secret_value())
        except ValueError as exc:
            raise SettingsError(f"SETTLEMENT_WEBHOOK_SIGNING_KEY: {exc}") from exc
    if settings.network != "local":
        raise SettingsError("SETTLEMENT_WEBHOOK_SIGNING_KEY is required outside the local network")
    return local_webhook_key(settings.data_dir)


def webhook_policy(settings: Settings) -> DeliveryPolicy:
    """How the delivery worker times out, retries and gives up, from the settings."""
    return DeliveryPolicy(
        timeout_s=settings.webhook_timeout_s,
        quick_tries=settings.webhook_quick_tries,
        backoff_base_s=settings.webhook_backoff_base_s,
        backoff_max_s=settings.webhook_backoff_max_s,
        give_up_after_s=settings.webhook_give_up_after_s,
        client_error_attempts=settings.webhook_client_error_attempts,
        concurrency=settings.webhook_concurrency,
    )


def build_delivery_worker(
    engine: Services, *, policy: DeliveryPolicy | None = None
) -> DeliveryWorker:
    """The webhook delivery worker over the engine's database, signing with
    ``webhook_key``, retrying as the settings say (or as ``policy`` says)."""
    return DeliveryWorker(
        engine.db,
        engine.clock,
        webhook_key(engine.settings),
        policy=policy or webhook_policy(engine.settings),
        local_network=engine.settings.network == "local",
    )


def build_ticket_keeper(
    settings: Settings, chains: Mapping[ChainName, Chain]
) -> TicketKeeper | None:
    """The keeper of the XRPL accounts' Tickets when the settings ask for one
    (``xrpl_ticket_target`` above 0) and the XRPL adapter is one that signs on Tickets;
    None otherwise. Raises ``ValueError`` for a target out of range."""
    chain = chains[ChainName.XRPL]
    if settings.xrpl_ticket_target == 0 or not isinstance(chain, XrplChain):
        return None
    return TicketKeeper(chain, list(settings.xrpl_ticket_holders), settings.xrpl_ticket_target)


def build_worker(engine: Services, ledgers: Ledgers, *, policy: WorkerPolicy) -> Worker:
    """The worker ``settle worker`` runs: it steps settlements through the ledgers'
    coordinator, sweeps expired commitments, and in its housekeeping publishes its
    breakers' states where operators see them (applying an admin's reset) and tops up
    the XRPL Tickets when the settings ask for it."""
    board = BreakerBoard(engine.db, engine.clock)
    keeper = build_ticket_keeper(engine.settings, ledgers.chains)

    def housekeeping() -> None:
        # breaker states go where `settle serve` and operators can see them, and an
        # admin's reset reaches this process's breakers
        board.publish(f"worker:{worker.name}", ledgers.guards)
        if keeper is not None:
            keeper.tend()

    worker = Worker(
        engine.db,
        ledgers.coordinator,
        engine.clock,
        policy=policy,
        expire=engine.commitments.expire_due,
        housekeeping=housekeeping,
    )
    return worker


def build_stepping_worker(
    engine: Services,
    coordinator: DvpCoordinator,
    *,
    policy: WorkerPolicy,
    name: str | None = None,
    clock: Clock | None = None,
) -> Worker:
    """A worker that only steps settlements through ``coordinator`` (on ``clock``, by
    default the engine's): no expiry sweep, no housekeeping. The demo, benchmarks and
    tests run it beside a coordinator of their own."""
    return Worker(engine.db, coordinator, clock or engine.clock, name=name, policy=policy)


# -- the local world ------------------------------------------------------------------------


def local_world(
    *,
    bond_units: Decimal = Decimal(1_000),
    usdc: Decimal = Decimal(10_000_000),
    xrpl_close_interval_s: float = 0.05,
    xrpl_idle_interval_s: float | None = 1.0,
    stellar_close_interval_s: float = 0.02,
    policy: ResiliencePolicy | None = None,
    extra_buyers: int = 0,
    stellar_channels: int = 4,
    xrpl_tickets: int = 0,
    networks: NetworkUrls | None = None,
) -> LocalWorld:
    """Start both nodes on free ports and provision the accounts and assets
    (``settlement.demo.world.provision_accounts``), with the engine's keys in an
    in-memory keystore and an adapter per chain behind a guard of ``policy``.

    The XRPL node closes a ledger holding transactions every ``xrpl_close_interval_s``
    (fast, for tests) but an empty one only every ``xrpl_idle_interval_s``: each close
    moves XRPL ledger time at least 1 s, so closing empty ledgers 20 times a second
    would run ledger time ahead of the engine's clock without bound. Busy periods still
    push it ahead by about a second per ledger; the engine judges deadlines on each
    ledger's own time, so that costs window, never safety.

    ``stellar_channels`` channel accounts (funded with XLM only) let the engine sign
    Stellar transactions of one sender or of the agent in parallel; 0 makes every
    transaction use its signer's own sequence. ``xrpl_tickets`` Tickets for the XRPL
    seller (who signs locks) and agent (commits, unwinds) do the same on the XRP
    Ledger; 0 leaves both on their own Sequence.

    ``networks`` provisions networks already running elsewhere instead of starting
    them here (the close intervals are then theirs, and ``advance_time`` refuses)."""
    # imported here: the story and the nodes are not needed by any other command
    from settlement.demo.world import LocalWorld, provision_accounts

    xrpl_node: XrplNode | None = None
    stellar_node: StellarNode | None = None
    if networks is None:
        xrpl_node, stellar_node, networks = _start_local_networks(
            xrpl_close_interval_s, xrpl_idle_interval_s, stellar_close_interval_s
        )
    xrpl, stellar = _provisioners(networks)
    accounts = provision_accounts(
        xrpl,
        stellar,
        bond_units=bond_units,
        usdc=usdc,
        extra_buyers=extra_buyers,
        stellar_channels=stellar_channels,
    )
    keystore = keystore_holding(
        [*accounts.engine_xrpl_signers(), accounts.anchor_xrpl],
        [*accounts.engine_stellar_signers(), accounts.anchor_stellar],
    )
    guards = chain_guards(policy)
    xrpl_chain, stellar_chain = _world_chains(networks, accounts, keystore, guards)
    if xrpl_tickets:
        _stock_tickets(xrpl_chain, accounts.engine_xrpl_signers(), xrpl_tickets)
    return LocalWorld(
        **vars(accounts),  # the story's accounts and assets, as provisioned
        xrpl_node=xrpl_node,
        stellar_node=stellar_node,
        xrpl=xrpl,
        stellar=stellar,
        keystore=keystore,
        clock=OffsetClock(),
        guards=guards,
        chains={ChainName.XRPL: xrpl_chain, ChainName.STELLAR: stellar_chain},
    )


def _start_local_networks(
    xrpl_close_interval_s: float,
    xrpl_idle_interval_s: float | None,
    stellar_close_interval_s: float,
) -> tuple[XrplNode, StellarNode, NetworkUrls]:
    """Both local networks serving on free loopback ports of this process."""
    from adapters.localnet.stellar import StellarNode
    from adapters.localnet.xrpl import XrplNode
    from settlement.demo.world import NetworkUrls

    xrpl_node = XrplNode(
        close_interval_s=xrpl_close_interval_s, idle_interval_s=xrpl_idle_interval_s
    )
    stellar_node = StellarNode(close_interval_s=stellar_close_interval_s)
    urls = NetworkUrls(
        xrpl_node.start(port=0), stellar_node.start(port=0), stellar_node.network_passphrase
    )
    return xrpl_node, stellar_node, urls


def _world_chains(
    networks: NetworkUrls,
    accounts: WorldAccounts,
    keystore: InMemoryKeystore,
    guards: Mapping[ChainName, ChainGuard],
) -> tuple[XrplChain, StellarChain]:
    """The local world's adapters: its agents, its channel accounts, its keystore."""
    return _chain_pair(
        networks.xrpl_url,
        networks.horizon_url,
        networks.stellar_network_passphrase,
        xrpl_agent=accounts.agent_xrpl.classic_address,
        stellar_agent=accounts.agent_stellar.public_key,
        signer=keystore,
        guards=guards,
        stellar_channels=[c.public_key for c in accounts.channels_stellar],
    )


def _provisioners(networks: NetworkUrls) -> tuple[XrplProvisioner, StellarProvisioner]:
    from adapters.localnet.provision import StellarProvisioner, XrplProvisioner

    xrpl = XrplProvisioner(
        networks.xrpl_url,
        faucet_url=networks.xrpl_faucet_url,
        poll_s=networks.poll_s,
        timeout_s=networks.timeout_s,
    )
    stellar = StellarProvisioner(
        networks.horizon_url,
        networks.stellar_network_passphrase,
        friendbot_url=networks.stellar_friendbot_url,
        poll_s=networks.poll_s,
        timeout_s=networks.timeout_s,
    )
    return xrpl, stellar


def _stock_tickets(chain: XrplChain, wallets: Iterable[Wallet], tickets: int) -> None:
    """Bring each of ``wallets`` to ``tickets`` Tickets; ``RuntimeError`` if one falls short."""
    for wallet in wallets:
        done = top_up_tickets(chain, wallet.classic_address, tickets)
        if not done.ok or done.after < tickets:
            raise RuntimeError(f"tickets for {wallet.classic_address}: {describe(done.outcome)}")
