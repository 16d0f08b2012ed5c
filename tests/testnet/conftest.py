"""Fixtures for the public testnets: the DVP world provisioned there, the engine over it.

The tests marked ``testnet`` run only where the public networks can be reached, and only
when asked: ``SETTLEMENT_XRPL_URL`` and ``SETTLEMENT_HORIZON_URL`` name the endpoints
(without them every such test skips, before any database or network is touched). The
faucets are hosts of their own: ``SETTLEMENT_XRPL_FAUCET_URL`` and
``SETTLEMENT_STELLAR_FRIENDBOT_URL``, by default the testnets' public ones; the Stellar
passphrase comes from the settings (``config/networks/testnet.toml``, or
``SETTLEMENT_STELLAR_NETWORK_PASSPHRASE``). The settings module has no faucet settings
yet, so they are read from the environment here.

The world is the one the local DVP tests use (``settlement.demo.world``), provisioned on
the testnets instead of on in-process nodes, and the engine and coordinator are built by
the composition root as a worker builds them, over a fresh database. Time is real
ledger time: the testnets close every 3-5 s, so every wait is long and polls slowly
(public servers limit how often one client may ask).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from cryptography.fernet import Fernet

from settlement import bootstrap
from settlement.bootstrap import DatabaseUrls
from settlement.demo.world import LocalWorld, NetworkUrls
from settlement.dvp import DvpCoordinator
from settlement.settings import load_settings
from tests.support import OFFICER, seed_compliance

XRPL_TESTNET_FAUCET_URL = "https://faucet.altnet.rippletest.net/accounts"
STELLAR_TESTNET_FRIENDBOT_URL = "https://friendbot.stellar.org"
#: a public ledger closes every 3-5 s; provisioning polls once a second, and gives a
#: funding or a set-up transaction this long to be validated
PROVISION_POLL_S = 1.0
PROVISION_TIMEOUT_S = 120.0
#: what the seller holds of the bond and the buyer of USDC once provisioned
BOND_UNITS = Decimal(100)
USDC_UNITS = Decimal(10_000)


@dataclass(frozen=True)
class PublicTestnets:
    xrpl_url: str
    horizon_url: str
    stellar_network_passphrase: str
    xrpl_faucet_url: str
    stellar_friendbot_url: str


def testnets_from_environment() -> PublicTestnets | str:
    """The endpoints to use, or why the testnet tests cannot run."""
    missing = [
        name
        for name in ("SETTLEMENT_XRPL_URL", "SETTLEMENT_HORIZON_URL")
        if not os.environ.get(name)
    ]
    if missing:
        return (
            f"{' and '.join(missing)} not set: the testnet tests run only against "
            "public networks named there (see README, 'Running against the public testnets')"
        )
    settings = load_settings(network="testnet")
    return PublicTestnets(
        xrpl_url=settings.xrpl_url,
        horizon_url=settings.horizon_url,
        stellar_network_passphrase=settings.stellar_network_passphrase,
        xrpl_faucet_url=os.environ.get("SETTLEMENT_XRPL_FAUCET_URL") or XRPL_TESTNET_FAUCET_URL,
        stellar_friendbot_url=(
            os.environ.get("SETTLEMENT_STELLAR_FRIENDBOT_URL") or STELLAR_TESTNET_FRIENDBOT_URL
        ),
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    # before any fixture: no embedded database started for a test that cannot run
    if item.get_closest_marker("testnet") is not None:
        found = testnets_from_environment()
        if isinstance(found, str):
            pytest.skip(found)


@pytest.fixture
def testnets() -> PublicTestnets:
    found = testnets_from_environment()
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture
def testnet_world(testnets: PublicTestnets) -> Iterator[LocalWorld]:
    """Bond issuer, seller and buyer on the XRPL testnet, USDC issuer, buyer, seller and
    fee account on the Stellar testnet, a settlement agent on each, all new accounts from
    the faucets (two to three minutes of ledger closes)."""
    world = bootstrap.local_world(
        bond_units=BOND_UNITS,
        usdc=USDC_UNITS,
        # one settlement at a time: the agent's own sequence is enough, and every
        # channel account would cost a friendbot call
        stellar_channels=0,
        networks=NetworkUrls(
            testnets.xrpl_url,
            testnets.horizon_url,
            testnets.stellar_network_passphrase,
            xrpl_faucet_url=testnets.xrpl_faucet_url,
            stellar_friendbot_url=testnets.stellar_friendbot_url,
            poll_s=PROVISION_POLL_S,
            timeout_s=PROVISION_TIMEOUT_S,
        ),
    )
    try:
        yield world
    finally:
        world.close()


@dataclass
class EngineOnPublicTestnets:
    world: LocalWorld
    engine: bootstrap.Services
    coordinator: DvpCoordinator


@pytest.fixture
def testnet_engine(
    testnet_world: LocalWorld, fresh_urls: DatabaseUrls
) -> Iterator[EngineOnPublicTestnets]:
    """The engine over a fresh database and the coordinator over the testnet adapters,
    built as a worker builds them, with the DVP policy from settings (the margins production
    runs with) and the world's accounts registered to KYC'd parties."""
    settings = load_settings(
        network="testnet",
        database_url=fresh_urls.owner,
        sealing_key=Fernet.generate_key().decode(),
    )
    engine = bootstrap.build(settings, clock=testnet_world.clock, urls=fresh_urls)
    seed_compliance(engine.commitments)
    testnet_world.register_accounts(
        engine.compliance, OFFICER, buyer="party-northwind", seller="party-southbank"
    )
    coordinator = bootstrap.build_coordinator(engine, testnet_world.chains)
    try:
        yield EngineOnPublicTestnets(testnet_world, engine, coordinator)
    finally:
        engine.close()
