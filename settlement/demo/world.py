"""The local world: both ledgers provisioned for a bond-versus-USDC settlement.

The demo and the DVP tests use it: an XRP Ledger where an issuer's tokenised bond
(``BND``) sits with the seller, a Stellar network where an issuer's ``USDC`` sits with
the buyer, a settlement agent on each ledger (the Stellar agent trusts USDC: claiming a
credit-asset balance needs a trustline), the keystore holding the keys the engine signs
with, and one adapter per chain behind its circuit breaker. ``advance_time`` moves both
ledgers' clocks and the engine's clock together.

This module tells the story (which accounts, which assets, who holds what, whose keys
the engine holds: ``provision_accounts``); ``settlement.bootstrap.local_world`` starts
or reaches the networks and builds the keystore, the breakers and the adapters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from stellar_sdk import Keypair
from xrpl.wallet import Wallet

from adapters.chain import Asset, Chain, ChainName
from adapters.localnet.provision import StellarProvisioner, XrplProvisioner
from adapters.resilience import ChainGuard
from adapters.signing import InMemoryKeystore
from settlement.clock import OffsetClock
from settlement.domain.values import Actor
from settlement.dvp import LegInstruction
from settlement.services.compliance import ComplianceService

if TYPE_CHECKING:
    from adapters.localnet.stellar import StellarNode
    from adapters.localnet.xrpl import XrplNode

BOND_CODE = "BND"
USDC_CODE = "USDC"


@dataclass(frozen=True)
class NetworkUrls:
    """Local networks already running elsewhere (``settle node xrpl|stellar``)."""

    xrpl_url: str
    horizon_url: str
    stellar_network_passphrase: str = "Standalone Network ; February 2017"  # noqa: S105 - public
    #: faucets that are hosts of their own (the public testnets'); None: the node's own
    xrpl_faucet_url: str | None = None
    stellar_friendbot_url: str | None = None
    #: how often and how long set-up waits for a ledger (testnets close in seconds)
    poll_s: float = 0.02
    timeout_s: float = 20.0


@dataclass
class WorldAccounts:
    """Who is who on the two ledgers and the two assets, as ``provision_accounts``
    made them. The engine signs for the senders of locks and for its agents
    (``engine_xrpl_signers``, ``engine_stellar_signers``); the issuers' keys stay here."""

    bond: Asset
    usdc: Asset
    seller_xrpl: Wallet
    buyer_xrpl: Wallet
    buyer_stellar: Keypair
    seller_stellar: Keypair
    agent_xrpl: Wallet
    agent_stellar: Keypair
    fee_stellar: Keypair
    extra_buyers: list[Keypair]
    #: Stellar channel accounts the engine signs with (transaction source, fees)
    channels_stellar: list[Keypair]
    #: the accounts that publish the audit anchors, one per ledger (XRP / XLM only); the
    #: engine holds their keys too, apart from the signers of legs
    anchor_xrpl: Wallet
    anchor_stellar: Keypair

    def engine_xrpl_signers(self) -> list[Wallet]:
        """The XRPL accounts whose keys the engine holds: the seller (who locks the
        bond) and the agent (commits, unwinds)."""
        return [self.seller_xrpl, self.agent_xrpl]

    def engine_stellar_signers(self) -> list[Keypair]:
        """The Stellar accounts whose keys the engine holds: every buyer (who locks
        USDC), the agent and the channel accounts."""
        return [self.buyer_stellar, *self.extra_buyers, self.agent_stellar, *self.channels_stellar]


def provision_accounts(
    xrpl: XrplProvisioner,
    stellar: StellarProvisioner,
    *,
    bond_units: Decimal,
    usdc: Decimal,
    extra_buyers: int,
    stellar_channels: int,
) -> WorldAccounts:
    """Fund the story's accounts and issue its assets: ``bond_units`` BND to the seller
    on the XRP Ledger (buyer and seller trust ten times that), ``usdc`` USDC to each
    buyer on Stellar (``1 + extra_buyers`` of them; seller, agent and fee account trust
    USDC), ``stellar_channels`` channel accounts holding XLM only, and an audit anchor
    account per ledger holding its native asset only. Raises
    ``adapters.localnet.provision.ProvisioningError`` when a set-up transaction fails."""
    issuer_x = xrpl.issuer(allow_trust_line_locking=True)
    bond = Asset(BOND_CODE, issuer_x.classic_address)
    seller_x, buyer_x, agent_x = xrpl.account(), xrpl.account(), xrpl.account()
    for holder in (seller_x, buyer_x):
        xrpl.trust(holder, bond, bond_units * 10)
    xrpl.issue(issuer_x, seller_x.classic_address, bond, bond_units)

    issuer_s = stellar.account()
    usdc_asset = Asset(USDC_CODE, issuer_s.public_key)
    buyer_s, seller_s, agent_s = stellar.account(), stellar.account(), stellar.account()
    fees_s = stellar.account()
    buyers = [buyer_s] + [stellar.account() for _ in range(extra_buyers)]
    for keypair in (*buyers, seller_s, agent_s, fees_s):
        stellar.trust(keypair, usdc_asset)
    for buyer in buyers:
        stellar.issue(issuer_s, buyer.public_key, usdc_asset, usdc)
    return WorldAccounts(
        bond=bond,
        usdc=usdc_asset,
        seller_xrpl=seller_x,
        buyer_xrpl=buyer_x,
        buyer_stellar=buyer_s,
        seller_stellar=seller_s,
        agent_xrpl=agent_x,
        agent_stellar=agent_s,
        fee_stellar=fees_s,
        extra_buyers=buyers[1:],
        channels_stellar=[stellar.account() for _ in range(stellar_channels)],
        anchor_xrpl=xrpl.account(),
        anchor_stellar=stellar.account(),
    )


@dataclass
class LocalWorld(WorldAccounts):
    """The provisioned accounts and what reaches them: the networks (when they run in
    this process), the provisioners, the engine's keystore, the engine's clock, and an
    adapter per chain behind its guard. Built by ``settlement.bootstrap.local_world``."""

    #: the networks when they run in this process; None when they run elsewhere
    xrpl_node: XrplNode | None
    stellar_node: StellarNode | None
    xrpl: XrplProvisioner
    stellar: StellarProvisioner
    keystore: InMemoryKeystore
    clock: OffsetClock
    guards: dict[ChainName, ChainGuard]
    chains: dict[ChainName, Chain]

    def legs(
        self, bond_units: Decimal, usdc: Decimal, *, buyer_stellar: Keypair | None = None
    ) -> list[LegInstruction]:
        """Payment first (USDC on Stellar, buyer to seller), delivery second (the bond
        on XRPL, seller to buyer)."""
        payer = buyer_stellar or self.buyer_stellar
        return [
            LegInstruction(
                ChainName.STELLAR, self.usdc, usdc, payer.public_key, self.seller_stellar.public_key
            ),
            LegInstruction(
                ChainName.XRPL,
                self.bond,
                bond_units,
                self.seller_xrpl.classic_address,
                self.buyer_xrpl.classic_address,
            ),
        ]

    def fee_leg(self, usdc: Decimal, *, payer: Keypair | None = None) -> LegInstruction:
        """A fee in USDC from the buyer to the fee account, locked and settled with the rest."""
        source = payer or self.buyer_stellar
        return LegInstruction(
            ChainName.STELLAR,
            self.usdc,
            usdc,
            source.public_key,
            self.fee_stellar.public_key,
            kind="fee",
        )

    def register_accounts(
        self, compliance: ComplianceService, officer: Actor, *, buyer: str, seller: str
    ) -> None:
        """Register the world's ledger accounts to KYC'd parties: the buyer's to
        ``buyer``, the seller's and the fee account to ``seller`` (idempotent)."""
        owned = [
            (buyer, "xrpl", self.buyer_xrpl.classic_address),
            (buyer, "stellar", self.buyer_stellar.public_key),
            *((buyer, "stellar", k.public_key) for k in self.extra_buyers),
            (seller, "xrpl", self.seller_xrpl.classic_address),
            (seller, "stellar", self.seller_stellar.public_key),
            (seller, "stellar", self.fee_stellar.public_key),
        ]
        known = compliance.owners_of([(chain, address) for _, chain, address in owned])
        for party, chain, address in owned:
            if (chain, address) not in known:
                compliance.register_account(officer, party, chain, address)

    def advance_time(self, seconds: int) -> None:
        """Move both ledgers and the engine forward together (networks in this process)."""
        if self.xrpl_node is None or self.stellar_node is None:
            raise RuntimeError("the networks run in other processes; their time is their own")
        self.xrpl_node.advance_time(seconds)
        self.stellar_node.advance_time(seconds)
        self.clock.advance(timedelta(seconds=seconds))

    def holdings(self) -> dict[str, Decimal]:
        """Every balance of the two assets the world's accounts hold, for conservation."""
        bond_holders = {
            "seller": self.seller_xrpl.classic_address,
            "buyer": self.buyer_xrpl.classic_address,
        }
        usdc_holders = {
            "buyer": self.buyer_stellar.public_key,
            "seller": self.seller_stellar.public_key,
            "agent": self.agent_stellar.public_key,
            "fees": self.fee_stellar.public_key,
        }
        usdc_holders |= {f"buyer{n}": k.public_key for n, k in enumerate(self.extra_buyers, 2)}
        out = {f"BND:{k}": self.xrpl.token_balance(v, self.bond) for k, v in bond_holders.items()}
        out |= {f"USDC:{k}": self.stellar.balance(v, self.usdc) for k, v in usdc_holders.items()}
        return out

    def close(self) -> None:
        for chain in self.chains.values():
            closer = getattr(chain, "close", None)
            if closer is not None:
                closer()
        self.xrpl.close()
        self.stellar.close()
        if self.xrpl_node is not None:
            self.xrpl_node.stop()
        if self.stellar_node is not None:
            self.stellar_node.stop()
