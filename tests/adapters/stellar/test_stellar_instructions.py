"""The Stellar instruction check: ``validate_leg`` refuses, before anything is signed,
a leg whose lock, claim or payout the ledger would refuse, naming the account, the
rule and the result code the ledger would answer.

On the local network, with an issuer that may revoke authorisation, so each test can
put one trust line in the state the rule is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

import pytest
from stellar_sdk import AuthorizationFlag, TrustLineFlags

from adapters.chain import ChainName, Leg, Rejected
from adapters.errors import LegInvalid
from adapters.localnet.stellar import StellarNode
from adapters.resilience import ChainGuard
from adapters.stellar import StellarChain
from tests.adapters.contract import settle
from tests.adapters.stellar.test_stellar_adapter import POLICY, StellarHarness, local_harness

AUTHORIZED = TrustLineFlags.AUTHORIZED_FLAG
MAINTAIN = TrustLineFlags.AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG
REVOCABLE = AuthorizationFlag.AUTHORIZATION_REVOCABLE
CLAWBACK = AuthorizationFlag.AUTHORIZATION_CLAWBACK_ENABLED


def issuer_with(stellar_node: StellarNode, flags: AuthorizationFlag) -> StellarHarness:
    """A credit harness whose issuer sets ``flags`` before any holder trusts it (the
    agent's line comes first: the harness creates it, so the flags are set after)."""
    h = local_harness(stellar_node, credit=True)
    assert h.issuer is not None
    h.send(h.issuer.public_key, lambda b: b.append_set_options_op(set_flags=flags))
    return h


@pytest.fixture
def regulated(stellar_node: StellarNode) -> Iterator[StellarHarness]:
    h = issuer_with(stellar_node, REVOCABLE)
    yield h
    h.close()


def set_line(
    h: StellarHarness,
    account: str,
    *,
    set_flags: TrustLineFlags | None = None,
    clear_flags: TrustLineFlags | None = None,
) -> None:
    assert h.issuer is not None
    h.send(
        h.issuer.public_key,
        lambda b: b.append_set_trust_line_flags_op(
            account, h.sdk_asset, clear_flags=clear_flags, set_flags=set_flags
        ),
    )


def revoke(h: StellarHarness, account: str) -> None:
    set_line(h, account, clear_flags=AUTHORIZED)


def maintain_only(h: StellarHarness, account: str) -> None:
    set_line(h, account, set_flags=MAINTAIN, clear_flags=AUTHORIZED)


def leg_of(h: StellarHarness, *, sender: str | None = None, receiver: str | None = None) -> Leg:
    return Leg(
        ChainName.STELLAR,
        h.asset,
        Decimal(5),
        sender or h.new_account(),
        receiver or h.new_account(),
    )


def refused(h: StellarHarness, leg: Leg, message: str, chain: StellarChain | None = None) -> None:
    """``validate_leg`` refuses ``leg`` with exactly ``message`` (``{asset}`` is the
    asset's canonical name), and nothing is signed."""
    signed = h.signatures()
    with pytest.raises(LegInvalid) as caught:
        (chain or h.chain).validate_leg(leg)
    expected = message.format(asset=f"{h.asset.code}:{h.asset.issuer}")
    assert str(caught.value) == expected
    assert h.signatures() == signed


def agent_chain(h: StellarHarness, agent: str) -> StellarChain:
    assert h.node is not None
    return StellarChain(
        h.node.base_url,
        h.passphrase,
        agent=agent,
        signer=h.signer,
        guard=ChainGuard("stellar", POLICY),
        head_fresh_s=0.0,
    )


# -- the receiver: the payout -----------------------------------------------------------------


def test_a_receiver_whose_line_is_not_authorised_is_refused(regulated: StellarHarness) -> None:
    receiver = regulated.new_account()
    revoke(regulated, receiver)
    refused(
        regulated,
        leg_of(regulated, receiver=receiver),
        f"receiver {receiver}'s trustline for {{asset}} is not authorised "
        "(op_not_authorized at payment)",
    )


def test_a_receiver_authorised_only_to_maintain_liabilities_is_refused(
    regulated: StellarHarness,
) -> None:
    receiver = regulated.new_account()
    maintain_only(regulated, receiver)
    refused(
        regulated,
        leg_of(regulated, receiver=receiver),
        f"receiver {receiver}'s trustline for {{asset}} is authorised only to maintain "
        "liabilities, not to receive (op_not_authorized at payment)",
    )


def test_a_receiver_without_a_line_is_refused(regulated: StellarHarness) -> None:
    receiver = regulated.new_account(trust=False)
    refused(
        regulated,
        leg_of(regulated, receiver=receiver),
        f"receiver {receiver} has no trustline for {{asset}} (op_no_trust at payment)",
    )


def test_a_receiver_without_room_under_its_limit_is_refused(regulated: StellarHarness) -> None:
    receiver = regulated.new_account(trust=False)
    regulated.trust(receiver, limit="12")
    regulated.issue(receiver, Decimal(8))
    refused(
        regulated,
        leg_of(regulated, receiver=receiver),
        f"receiver {receiver}'s trustline for {{asset}} can take 4.0000000 more "
        f"{regulated.asset.code}, not 5 (op_line_full at payment)",
    )
    regulated.chain.validate_leg(
        Leg(ChainName.STELLAR, regulated.asset, Decimal(4), regulated.new_account(), receiver)
    )


# -- the agent: its claim and its payment out -----------------------------------------------


def test_an_agent_whose_line_is_not_authorised_is_refused(regulated: StellarHarness) -> None:
    revoke(regulated, regulated.agent)
    refused(
        regulated,
        leg_of(regulated),
        f"settlement agent {regulated.agent}'s trustline for {{asset}} is not authorised "
        "(op_not_authorized at claim_claimable_balance)",
    )


def test_an_agent_authorised_only_to_maintain_liabilities_is_refused(
    regulated: StellarHarness,
) -> None:
    maintain_only(regulated, regulated.agent)
    refused(
        regulated,
        leg_of(regulated),
        f"settlement agent {regulated.agent}'s trustline for {{asset}} is authorised only to "
        "maintain liabilities, not to receive (op_not_authorized at claim_claimable_balance)",
    )


def test_an_agent_without_a_line_or_room_is_refused(regulated: StellarHarness) -> None:
    h = regulated
    leg = leg_of(h)
    lineless = h.new_account(trust=False)
    full = h.new_account(trust=False)
    h.trust(full, limit="7")
    h.issue(full, Decimal(3))
    for agent, message in (
        (lineless, f"settlement agent {lineless} has no trustline for {{asset}} "),
        (full, f"settlement agent {full}'s trustline for {{asset}} can take 4.0000000 more "),
    ):
        chain = agent_chain(h, agent)
        try:
            with pytest.raises(LegInvalid) as caught:
                chain.validate_leg(leg)
        finally:
            chain.close()
        text = str(caught.value)
        assert text.startswith(message.format(asset=f"{h.asset.code}:{h.asset.issuer}")), text
        assert text.endswith("at claim_claimable_balance)"), text


# -- the sender: the lock ---------------------------------------------------------------------


@pytest.mark.parametrize("state", ["revoked", "maintain_only"])
def test_a_sender_whose_line_is_not_fully_authorised_is_refused(
    regulated: StellarHarness, state: str
) -> None:
    sender = regulated.new_account()
    (revoke if state == "revoked" else maintain_only)(regulated, sender)
    refused(
        regulated,
        leg_of(regulated, sender=sender),
        f"sender {sender}'s trustline for {{asset}} is not authorised "
        "(op_not_authorized at create_claimable_balance)",
    )


def test_a_sender_that_does_not_hold_the_amount_is_refused(regulated: StellarHarness) -> None:
    sender = regulated.new_account(issue=Decimal(2))
    with pytest.raises(LegInvalid, match=re.escape("(op_underfunded at create_claimable_balance)")):
        regulated.chain.validate_leg(leg_of(regulated, sender=sender))


def test_the_sender_is_checked_for_the_lock_the_ledger_would_refuse(
    regulated: StellarHarness,
) -> None:
    """What the check stands for: the lock of a revoked sender is refused by the ledger
    with the code the message names."""
    sender = regulated.new_account()
    revoke(regulated, sender)
    leg = leg_of(regulated, sender=sender)
    outcome = settle(regulated, regulated.chain.prepare_lock(leg, regulated.terms(3600)))
    assert isinstance(outcome, Rejected), outcome
    assert outcome.code == "tx_failed: op_not_authorized", outcome


# -- allowed --------------------------------------------------------------------------------


def test_a_clawback_enabled_asset_is_allowed(stellar_node: StellarNode) -> None:
    """Allowed, and documented as a risk: the issuer can claw back what it issued."""
    h = issuer_with(stellar_node, REVOCABLE | CLAWBACK)
    try:
        leg = leg_of(h)
        line = h.chain._horizon.account(leg.receiver)
        assert line is not None
        assert line.lines[(h.asset.code, str(h.asset.issuer))].clawback_enabled
        h.chain.validate_leg(leg)
    finally:
        h.close()


def test_an_issuer_needs_no_line_for_its_own_asset(regulated: StellarHarness) -> None:
    assert regulated.issuer is not None
    regulated.chain.validate_leg(leg_of(regulated, receiver=regulated.issuer.public_key))
    issuer_agent = agent_chain(regulated, regulated.issuer.public_key)
    try:
        issuer_agent.validate_leg(leg_of(regulated))
    finally:
        issuer_agent.close()
