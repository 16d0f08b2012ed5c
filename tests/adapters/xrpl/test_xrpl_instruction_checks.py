"""The instruction check refuses, before anything is signed, legs whose lock or payout
the XRP Ledger would refuse: deposit authorisation, RequireAuth, freezes, transfer
fees, and a custody lock's own trust line.

Each rule is set up with a real transaction on the local node (closing only when
told), and the message must name the account and the rule. Where it helps, the test
also shows the ledger refusing what the check refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.transactions import (
    AccountSet,
    AccountSetAsfFlag,
    DepositPreauth,
    Payment,
    TrustSet,
    TrustSetFlag,
)
from xrpl.wallet import Wallet

from adapters.chain import Applied, Asset, Leg, LockKind, Rejected
from adapters.errors import LegInvalid
from adapters.localnet.xrpl import XrplNode
from tests.adapters.xrpl.test_xrpl_adapter import (
    World,
    world_on,
)


@pytest.fixture
def world() -> Iterator[World]:
    """TokenEscrow on: tokens are escrowed."""
    with XrplNode(close_interval_s=0) as node:
        world = world_on(node)
        yield world
        world.ledger.http.close()


@pytest.fixture
def custody() -> Iterator[World]:
    """TokenEscrow off: tokens are held in custody by the agent."""
    with XrplNode(close_interval_s=0, amendments={"TokenEscrow": False}) as node:
        world = world_on(node)
        yield world
        world.ledger.http.close()


@dataclass
class Token:
    world: World
    issuer: Wallet

    @property
    def asset(self) -> Asset:
        return Asset("USD", self.issuer.classic_address)

    def amount(self, value: str, *, issuer: str | None = None) -> IssuedCurrencyAmount:
        return IssuedCurrencyAmount(
            currency="USD", issuer=issuer or self.issuer.classic_address, value=value
        )

    def issuer_sets(self, holder: Wallet, flags: int) -> None:
        """The issuer's TrustSet on its side of ``holder``'s line."""
        limit = self.amount("0", issuer=holder.classic_address)
        self.world.ledger.setup(
            TrustSet(account=self.issuer.classic_address, limit_amount=limit, flags=flags),
            self.issuer,
        )

    def account_flag(self, flag: AccountSetAsfFlag, *, clear: bool = False) -> None:
        address = self.issuer.classic_address
        tx = (
            AccountSet(account=address, clear_flag=flag)
            if clear
            else AccountSet(account=address, set_flag=flag)
        )
        self.world.ledger.setup(tx, self.issuer)


def token(world: World, *, require_auth: bool = False, rate: int | None = None) -> Token:
    """An issuer of USD that allows escrow; alice, bob and the agent trust it (lines the
    issuer authorises when it requires authorisation, bob's only when asked); alice
    holds 100."""
    issuer = world.ledger.wallet()
    made = Token(world, issuer)
    flags = [AccountSetAsfFlag.ASF_DEFAULT_RIPPLE, AccountSetAsfFlag.ASF_ALLOW_TRUSTLINE_LOCKING]
    if require_auth:  # only while the issuer owns nothing (tecOWNERS)
        flags.insert(0, AccountSetAsfFlag.ASF_REQUIRE_AUTH)
    for flag in flags:
        made.account_flag(flag)
    for holder in (world.alice, world.bob, world.agent):
        world.ledger.setup(
            TrustSet(account=holder.classic_address, limit_amount=made.amount("1000")), holder
        )
    if require_auth:
        made.issuer_sets(world.alice, TrustSetFlag.TF_SET_AUTH)
    world.ledger.setup(
        Payment(
            account=issuer.classic_address,
            destination=world.alice.classic_address,
            amount=made.amount("100"),
        ),
        issuer,
    )
    if rate is not None:
        world.ledger.setup(AccountSet(account=issuer.classic_address, transfer_rate=rate), issuer)
    return made


def refused(world: World, leg: Leg, *parts: str) -> str:
    """validate_leg refuses ``leg`` with a message holding every one of ``parts``."""
    with pytest.raises(LegInvalid) as caught:
        world.chain.validate_leg(leg)
    message = str(caught.value)
    for part in parts:
        assert part in message, (part, message)
    return message


# --- deposit authorisation ----------------------------------------------------------------


def test_a_receiver_with_deposit_auth_must_preauthorise_the_agent(world: World) -> None:
    bob, agent = world.bob.classic_address, world.agent.classic_address
    leg = world.leg("10")
    lock, _ = world.lock(leg)  # locked before the receiver changed its mind
    world.ledger.setup(
        AccountSet(account=bob, set_flag=AccountSetAsfFlag.ASF_DEPOSIT_AUTH), world.bob
    )
    message = refused(world, leg)
    assert message == (
        f"receiver {bob} requires deposit authorisation and has not preauthorised the "
        f"settlement agent {agent} (tecNO_PERMISSION at the agent's EscrowFinish)"
    )
    # what the check foresaw: the agent's finish is refused for good
    finish = world.chain.prepare_commit(leg, lock, world.lock_secret.fulfillment_hex)
    outcome = world.settle(finish)
    assert isinstance(outcome, Rejected) and outcome.code == "tecNO_PERMISSION", outcome

    world.ledger.setup(DepositPreauth(account=bob, authorize=agent), world.bob)
    world.chain.validate_leg(leg)
    again = world.chain.prepare_commit(leg, lock, world.lock_secret.fulfillment_hex)
    assert isinstance(world.settle(again), Applied)


def test_a_custody_lock_needs_the_agent_and_the_sender_to_take_each_others_payments(
    custody: World,
) -> None:
    usd = token(custody)
    leg = custody.leg("10", usd.asset)
    alice, agent = custody.alice.classic_address, custody.agent.classic_address
    custody.chain.validate_leg(leg)

    custody.ledger.setup(
        AccountSet(account=alice, set_flag=AccountSetAsfFlag.ASF_DEPOSIT_AUTH), custody.alice
    )
    refused(
        custody,
        leg,
        f"sender {alice} requires deposit authorisation",
        f"settlement agent {agent}",
        "the agent's payment back",
    )
    custody.ledger.setup(DepositPreauth(account=alice, authorize=agent), custody.alice)
    custody.chain.validate_leg(leg)

    custody.ledger.setup(
        AccountSet(account=agent, set_flag=AccountSetAsfFlag.ASF_DEPOSIT_AUTH), custody.agent
    )
    refused(
        custody, leg, f"settlement agent {agent} requires deposit authorisation", "custody lock"
    )


# --- RequireAuth --------------------------------------------------------------------------


def test_the_receivers_line_must_be_authorised_where_the_issuer_requires_it(
    world: World,
) -> None:
    usd = token(world, require_auth=True)
    leg = world.leg("10", usd.asset)
    refused(
        world,
        leg,
        f"receiver {world.bob.classic_address}'s trust line for USD",
        "is not authorised",
        "lsfRequireAuth",
        "tecNO_AUTH",
    )
    usd.issuer_sets(world.bob, TrustSetFlag.TF_SET_AUTH)
    world.chain.validate_leg(leg)


def test_a_custody_agents_line_must_be_authorised(custody: World) -> None:
    usd = token(custody, require_auth=True)
    usd.issuer_sets(custody.bob, TrustSetFlag.TF_SET_AUTH)
    leg = custody.leg("10", usd.asset)
    refused(
        custody,
        leg,
        f"settlement agent {custody.agent.classic_address}'s trust line",
        "lsfRequireAuth",
        "tecPATH_DRY",
    )
    usd.issuer_sets(custody.agent, TrustSetFlag.TF_SET_AUTH)
    custody.chain.validate_leg(leg)


# --- freezes ------------------------------------------------------------------------------


def test_a_line_frozen_by_the_issuer_is_refused_for_either_party(world: World) -> None:
    usd = token(world)
    leg = world.leg("10", usd.asset)
    for holder, role in ((world.bob, "receiver"), (world.alice, "sender")):
        usd.issuer_sets(holder, TrustSetFlag.TF_SET_FREEZE)
        refused(
            world,
            leg,
            f"{role} {holder.classic_address}'s trust line",
            "frozen by the issuer",
            "tecFROZEN",
        )
        usd.issuer_sets(holder, TrustSetFlag.TF_CLEAR_FREEZE)
        world.chain.validate_leg(leg)


def test_a_line_the_receiver_froze_itself_is_refused(custody: World) -> None:
    usd = token(custody)
    leg = custody.leg("10", usd.asset)
    own = TrustSet(
        account=custody.bob.classic_address,
        limit_amount=usd.amount("1000"),
        flags=TrustSetFlag.TF_SET_FREEZE,
    )
    custody.ledger.setup(own, custody.bob)
    refused(custody, leg, "frozen on the holder's own side", "tecPATH_DRY")


def test_a_global_freeze_is_refused(world: World) -> None:
    usd = token(world)
    leg = world.leg("10", usd.asset)
    usd.account_flag(AccountSetAsfFlag.ASF_GLOBAL_FREEZE)
    refused(world, leg, f"issuer {usd.issuer.classic_address}", "lsfGlobalFreeze")
    usd.account_flag(AccountSetAsfFlag.ASF_GLOBAL_FREEZE, clear=True)
    world.chain.validate_leg(leg)


def test_a_deep_frozen_receiver_is_refused(world: World) -> None:
    usd = token(world)
    leg = world.leg("10", usd.asset)
    lock, _ = world.lock(leg)
    usd.issuer_sets(world.bob, TrustSetFlag.TF_SET_FREEZE | TrustSetFlag.TF_SET_DEEP_FREEZE)
    refused(world, leg, f"receiver {world.bob.classic_address}", "deep-frozen")
    # what the check foresaw: a deep freeze stops even the finish
    finish = world.chain.prepare_commit(leg, lock, world.lock_secret.fulfillment_hex)
    outcome = world.settle(finish)
    assert isinstance(outcome, Rejected) and outcome.code == "tecFROZEN", outcome


def test_a_custody_agents_frozen_line_is_refused(custody: World) -> None:
    usd = token(custody)
    usd.issuer_sets(custody.agent, TrustSetFlag.TF_SET_FREEZE)
    refused(
        custody,
        custody.leg("10", usd.asset),
        f"settlement agent {custody.agent.classic_address}'s trust line",
        "frozen by the issuer",
    )


# --- transfer fees ------------------------------------------------------------------------


def test_an_escrow_whose_receiver_would_bear_a_transfer_fee_is_refused(world: World) -> None:
    usd = token(world, rate=1_250_000_000)
    leg = world.leg("40", usd.asset)
    assert world.chain.lock_kind(leg) is LockKind.ESCROW
    refused(
        world,
        leg,
        f"issuer {usd.issuer.classic_address} charges a transfer fee",
        f"receiver {world.bob.classic_address} would get 32 USD, not 40",
        "the transfer fee is not covered",
    )
    # to its issuer the token is redeemed, and no fee is charged
    to_issuer = Leg(leg.chain, leg.asset, leg.amount, leg.sender, usd.issuer.classic_address)
    world.chain.validate_leg(to_issuer)


def test_a_transfer_fee_set_after_the_check_stops_the_lock(world: World) -> None:
    usd = token(world)
    leg = world.leg("40", usd.asset)
    world.chain.validate_leg(leg)
    world.ledger.setup(
        AccountSet(account=usd.issuer.classic_address, transfer_rate=1_100_000_000), usd.issuer
    )
    with pytest.raises(LegInvalid, match="the transfer fee is not covered"):
        world.chain.prepare_lock(leg, world.terms())


def test_a_custody_leg_with_a_transfer_fee_is_allowed_the_agent_pays_it(custody: World) -> None:
    usd = token(custody, rate=1_250_000_000)
    leg = custody.leg("40", usd.asset)
    # the agent gets 32 in and pays 50 out: it must hold the 18 itself
    refused(custody, leg, "holds 0 USD, less than the 18", "transfer fees it pays")
    custody.ledger.setup(
        Payment(
            account=usd.issuer.classic_address,
            destination=custody.agent.classic_address,
            amount=usd.amount("18"),
        ),
        usd.issuer,
    )
    custody.chain.validate_leg(leg)
