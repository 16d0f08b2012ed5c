"""Clawback and ClawbackClaimableBalance (CAP-35): an issuer taking back its asset from a
holder's line or from a claimable balance, the one way a placed DVP lock can shrink or
vanish without its claimants acting.

Checked against stellar-core ClawbackOpFrame and ClawbackClaimableBalanceOpFrame, and
Horizon's result code names (services/horizon/internal/codes).
"""

from __future__ import annotations

from decimal import Decimal

from stellar_sdk import Asset, Claimant, ClaimPredicate, Keypair, MuxedAccount, Server
from stellar_sdk import xdr as x
from stellar_sdk.exceptions import NotFoundError

from adapters.localnet.stellar import StellarNode
from adapters.localnet.stellar.xdrutil import asset_to_xdr, parse_asset_param
from tests.adapters.localnet.stellar.helpers import (
    build,
    credit_balance,
    failure_codes,
    sequence,
    sign_all,
)
from tests.adapters.localnet.stellar.issuers import (
    AUTHORIZED,
    CLAWBACK,
    REVOCABLE,
    Fund,
    line_of,
    pay,
    raw_op_codes,
    set_issuer_flags,
    submit,
    trust,
)


def _clawback_issuer(
    server: Server, node: StellarNode, fund: Fund, *holders: Keypair
) -> tuple[Keypair, Asset]:
    issuer = fund()
    set_issuer_flags(server, node, issuer, REVOCABLE | CLAWBACK)
    usd = Asset("USD", issuer.public_key)
    for holder in holders:
        trust(server, node, holder, usd)
        pay(server, node, issuer, holder.public_key, usd, "100")
    return issuer, usd


def _claw(
    server: Server, node: StellarNode, issuer: Keypair, asset: Asset, holder: str, amount: str
) -> dict[str, object]:
    """A clawback that must fail; Horizon's result codes."""
    envelope = sign_all(
        build(server, node, issuer).append_clawback_op(asset, holder, amount).build(), issuer
    )
    return failure_codes(server, envelope)


def test_clawback_takes_from_a_line_even_when_frozen(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    # ClawbackOpFrame::doApply uses addBalanceSkipAuthorization: authorisation is ignored.
    holder = fund()
    issuer, usd = _clawback_issuer(server, node, fund, holder)
    submit(server, node, issuer, lambda b: b.append_clawback_op(usd, holder.public_key, "30"))
    assert credit_balance(server, holder.public_key, usd) == Decimal("70")
    submit(
        server,
        node,
        issuer,
        lambda b: b.append_set_trust_line_flags_op(holder.public_key, usd, clear_flags=AUTHORIZED),
    )
    submit(server, node, issuer, lambda b: b.append_clawback_op(usd, holder.public_key, "70"))
    assert credit_balance(server, holder.public_key, usd) == Decimal("0")


def test_clawback_failures(server: Server, node: StellarNode, fund: Fund) -> None:
    # ClawbackOpFrame::doApply: NO_TRUST, NOT_CLAWBACK_ENABLED, UNDERFUNDED.
    holder, early, stranger = fund(), fund(), fund()
    issuer = fund()
    usd = Asset("USD", issuer.public_key)
    trust(server, node, early, usd)  # before the issuer enabled clawback
    pay(server, node, issuer, early.public_key, usd, "10")
    set_issuer_flags(server, node, issuer, REVOCABLE | CLAWBACK)
    trust(server, node, holder, usd)
    pay(server, node, issuer, holder.public_key, usd, "10")

    over = _claw(server, node, issuer, usd, holder.public_key, "10.0000001")
    assert over["operations"] == ["op_underfunded"]
    not_enabled = _claw(server, node, issuer, usd, early.public_key, "1")
    assert not_enabled["operations"] == ["op_not_clawback_enabled"]
    for account_id in (stranger.public_key, Keypair.random().public_key):
        no_trust = _claw(server, node, issuer, usd, account_id, "1")
        assert no_trust["operations"] == ["op_no_trust"]
    # A muxed address of the issuer itself is not caught as "self" (core compares the
    # muxed account); it finds no trust line.
    muxed_self = MuxedAccount(issuer.public_key, 7).account_muxed
    assert muxed_self is not None
    self_line = _claw(server, node, issuer, usd, muxed_self, "1")
    assert self_line["operations"] == ["op_no_trust"]
    assert credit_balance(server, holder.public_key, usd) == Decimal("10")
    assert credit_balance(server, early.public_key, usd) == Decimal("10")


def test_clawback_malformed(server: Server, node: StellarNode, fund: Fund) -> None:
    # ClawbackOpFrame::doCheckValid: self, amount < 1, native, bad code, not the issuer.
    holder = fund()
    issuer, usd = _clawback_issuer(server, node, fund, holder)
    other_issuer = fund()
    before = sequence(server, issuer.public_key)

    def body(asset: x.Asset, source: str, amount: int) -> x.OperationBody:
        return x.OperationBody(
            x.OperationType.CLAWBACK,
            clawback_op=x.ClawbackOp(asset, MuxedAccount(source).to_xdr_object(), x.Int64(amount)),
        )

    usd_xdr = asset_to_xdr(parse_asset_param(f"USD:{issuer.public_key}"))
    bad_code = asset_to_xdr(parse_asset_param(f"USD:{issuer.public_key}"))
    assert bad_code.alpha_num4 is not None
    bad_code.alpha_num4.asset_code = x.AssetCode4(b"U$D\x00")
    foreign = asset_to_xdr(parse_asset_param(f"USD:{other_issuer.public_key}"))
    native = x.Asset(x.AssetType.ASSET_TYPE_NATIVE)
    for op in (
        body(usd_xdr, issuer.public_key, 1),  # from itself
        body(usd_xdr, holder.public_key, 0),
        body(usd_xdr, holder.public_key, -5),
        body(native, holder.public_key, 1),
        body(bad_code, holder.public_key, 1),
        body(foreign, holder.public_key, 1),  # not the asset's issuer
    ):
        codes = raw_op_codes(server, node, issuer, op)
        assert codes == {"transaction": "tx_failed", "operations": ["op_malformed"]}
    assert sequence(server, issuer.public_key) == before
    assert credit_balance(server, holder.public_key, usd) == Decimal("100")


def _lock(server: Server, node: StellarNode, sender: Keypair, agent: Keypair, asset: Asset) -> str:
    claimants = [Claimant(agent.public_key, ClaimPredicate.predicate_unconditional())]
    envelope = sign_all(
        build(server, node, sender)
        .append_create_claimable_balance_op(asset, "40", claimants)
        .build(),
        sender,
    )
    server.submit_transaction(envelope)
    return envelope.transaction.get_claimable_balance_id(0)


def test_clawback_claimable_balance(server: Server, node: StellarNode, fund: Fund) -> None:
    # CreateClaimableBalanceOpFrame sets CLAIMABLE_BALANCE_CLAWBACK_ENABLED_FLAG from the
    # creator's line; ClawbackClaimableBalanceOpFrame removes the entry and releases the
    # sponsor's reserve.
    sender, agent = fund(), fund()
    issuer, usd = _clawback_issuer(server, node, fund, sender)
    balance_id = _lock(server, node, sender, agent, usd)
    doc = server.claimable_balances().claimable_balance(balance_id).call()
    assert doc["flags"] == {"clawback_enabled": True}
    assert server.accounts().account_id(sender.public_key).call()["num_sponsoring"] == 1

    submit(server, node, issuer, lambda b: b.append_clawback_claimable_balance_op(balance_id))
    try:
        server.claimable_balances().claimable_balance(balance_id).call()
        raise AssertionError("the clawed-back balance is still listed")
    except NotFoundError:
        pass
    assert server.accounts().account_id(sender.public_key).call()["num_sponsoring"] == 0
    assert credit_balance(server, sender.public_key, usd) == Decimal("60")

    gone = sign_all(
        build(server, node, issuer).append_clawback_claimable_balance_op(balance_id).build(),
        issuer,
    )
    assert failure_codes(server, gone)["operations"] == ["op_does_not_exist"]


def test_clawback_claimable_balance_refusals(server: Server, node: StellarNode, fund: Fund) -> None:
    # ClawbackClaimableBalanceOpFrame::doApply: NOT_ISSUER (Horizon: op_no_issuer) for
    # another account or a native balance; NOT_CLAWBACK_ENABLED for a balance created
    # from a line without the flag.
    sender, agent, early = fund(), fund(), fund()
    plain_issuer = fund()
    eur = Asset("EUR", plain_issuer.public_key)
    trust(server, node, early, eur)
    pay(server, node, plain_issuer, early.public_key, eur, "50")
    issuer, usd = _clawback_issuer(server, node, fund, sender)

    clawable = _lock(server, node, sender, agent, usd)
    native = _lock(server, node, sender, agent, Asset.native())
    plain = _lock(server, node, early, agent, eur)
    assert server.claimable_balances().claimable_balance(plain).call()["flags"] == {
        "clawback_enabled": False
    }
    set_issuer_flags(server, node, plain_issuer, REVOCABLE | CLAWBACK)

    def refused(by: Keypair, balance_id: str) -> list[object]:
        envelope = sign_all(
            build(server, node, by).append_clawback_claimable_balance_op(balance_id).build(), by
        )
        operations = failure_codes(server, envelope)["operations"]
        assert isinstance(operations, list)
        return operations

    assert refused(agent, clawable) == ["op_no_issuer"]
    assert refused(issuer, native) == ["op_no_issuer"]
    # The issuer enabling clawback later does not reach balances created before.
    assert refused(plain_issuer, plain) == ["op_not_clawback_enabled"]
    unknown = "00000000" + "ab" * 32
    assert refused(issuer, unknown) == ["op_does_not_exist"]
    for balance_id in (clawable, native, plain):
        assert server.claimable_balances().claimable_balance(balance_id).call()["amount"] == (
            "40.0000000"
        )
    line = line_of(server, sender.public_key, usd)
    assert line is not None and line["balance"] == "60.0000000"
