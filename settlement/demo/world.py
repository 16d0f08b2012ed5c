"""Both local networks in one process, provisioned for a bond-versus-USDC settlement.

The demo and the DVP tests use this: an XRP Ledger where an issuer's tokenised bond
(``BND``) sits with the seller, a Stellar network where an issuer's ``USDC`` sits with
the buyer, a settlement agent on each ledger (the Stellar agent trusts USDC: claiming a
credit-asset balance needs a trustline), the keystore holding the keys the engine signs
with, and one adapter per chain behind its circuit breaker. ``advance_time`` moves both
ledgers' clocks and the engine's clock together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from stellar_sdk import Keypair
from xrpl.wallet import Wallet

from adapters.chain import Asset, Chain, ChainName
from adapters.localnet.provision import StellarProvisioner, XrplProvisioner
from adapters.localnet.stellar import StellarNode
from adapters.localnet.xrpl import XrplNode
from adapters.resilience import ChainGuard, ResiliencePolicy
from adapters.signing import InMemoryKeystore
from adapters.stellar import StellarChain
from adapters.xrpl import XrplChain
from settlement.clock import OffsetClock
from settlement.domain.values import Actor
from settlement.dvp import LegInstruction
from settlement.dvp.tickets import describe, top_up_tickets
from settlement.services.compliance import ComplianceService

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
class LocalWorld:
    #: the networks when they run in this process; None when they run elsewhere
    xrpl_node: XrplNode | None
    stellar_node: StellarNode | None
    xrpl: XrplProvisioner
    stellar: StellarProvisioner
    keystore: InMemoryKeystore
    clock: OffsetClock
    guards: dict[ChainName, ChainGuard]
    chains: dict[ChainName, Chain]
    bond: Asset
    usdc: Asset
    seller_xrpl: Wallet
    buyer_xrpl: Wallet
    buyer_stellar: Keypair
    seller_stellar: Keypair
    agent_xrpl: Wallet
    agent_stellar: Keypair
    fee_stellar: Keypair
    extra_buyers: list[Keypair] = field(default_factory=list)
    #: Stellar channel accounts the engine signs with (transaction source, fees)
    channels_stellar: list[Keypair] = field(default_factory=list)

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


def start_local_world(
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
    """Start both nodes on free ports and provision the accounts and assets.

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
    xrpl_node: XrplNode | None = None
    stellar_node: StellarNode | None = None
    if networks is None:
        xrpl_node = XrplNode(
            close_interval_s=xrpl_close_interval_s, idle_interval_s=xrpl_idle_interval_s
        )
        stellar_node = StellarNode(close_interval_s=stellar_close_interval_s)
        networks = NetworkUrls(
            xrpl_node.start(port=0), stellar_node.start(port=0), stellar_node.network_passphrase
        )
    xrpl_url, horizon_url = networks.xrpl_url, networks.horizon_url
    xrpl = XrplProvisioner(
        xrpl_url,
        faucet_url=networks.xrpl_faucet_url,
        poll_s=networks.poll_s,
        timeout_s=networks.timeout_s,
    )
    stellar = StellarProvisioner(
        horizon_url,
        networks.stellar_network_passphrase,
        friendbot_url=networks.stellar_friendbot_url,
        poll_s=networks.poll_s,
        timeout_s=networks.timeout_s,
    )
    keystore = InMemoryKeystore()

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

    # the engine signs for the senders of locks and for its agents
    for wallet in (seller_x, agent_x):
        keystore.add_xrpl(wallet)
    channels = [stellar.account() for _ in range(stellar_channels)]
    for signer in (*buyers, agent_s, *channels):
        keystore.add_stellar(signer)
    guards = {
        ChainName.XRPL: ChainGuard("xrpl", policy),
        ChainName.STELLAR: ChainGuard("stellar", policy),
    }
    chains: dict[ChainName, Chain] = {
        ChainName.XRPL: XrplChain(
            xrpl_url, agent=agent_x.classic_address, signer=keystore, guard=guards[ChainName.XRPL]
        ),
        ChainName.STELLAR: StellarChain(
            horizon_url,
            networks.stellar_network_passphrase,
            agent=agent_s.public_key,
            signer=keystore,
            guard=guards[ChainName.STELLAR],
            channels=[c.public_key for c in channels],
        ),
    }
    if xrpl_tickets:
        xrpl_chain = chains[ChainName.XRPL]
        assert isinstance(xrpl_chain, XrplChain)
        for wallet in (seller_x, agent_x):
            done = top_up_tickets(xrpl_chain, wallet.classic_address, xrpl_tickets)
            if not done.ok or done.after < xrpl_tickets:
                raise RuntimeError(
                    f"tickets for {wallet.classic_address}: {describe(done.outcome)}"
                )
    return LocalWorld(
        xrpl_node=xrpl_node,
        stellar_node=stellar_node,
        xrpl=xrpl,
        stellar=stellar,
        keystore=keystore,
        clock=OffsetClock(),
        guards=guards,
        chains=chains,
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
        channels_stellar=channels,
    )
