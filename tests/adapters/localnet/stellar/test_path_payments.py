"""PathPaymentStrictReceive and PathPaymentStrictSend without an order book.

Clients use path payments for plain payments (same asset, empty path); those must work
exactly as stellar-core applies them. A path that changes asset needs offers, and this
node has none: core's convert then answers TOO_FEW_OFFERS, and so does the node.
Checked against PathPaymentStrictReceiveOpFrame, PathPaymentStrictSendOpFrame and
PathPaymentOpFrameBase (updateSourceBalance / updateDestBalance).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from stellar_sdk import Asset, Keypair, Server, TransactionBuilder
from stellar_sdk import xdr as x

from adapters.localnet.stellar import StellarNode
from adapters.localnet.stellar.xdrutil import asset_to_xdr, parse_asset_param
from tests.adapters.localnet.stellar.helpers import (
    build,
    credit_balance,
    failure_codes,
    native_balance,
    sequence,
    sign_all,
)
from tests.adapters.localnet.stellar.issuers import (
    AUTHORIZED,
    MAINTAIN,
    REVOCABLE,
    Fund,
    pay,
    raw_op_codes,
    set_issuer_flags,
    submit,
    trust,
)

FEE = Decimal("0.00001")


def _holders(
    server: Server, node: StellarNode, fund: Fund, count: int
) -> tuple[Keypair, Asset, list[Keypair]]:
    issuer = fund()
    set_issuer_flags(server, node, issuer, REVOCABLE)
    usd = Asset("USD", issuer.public_key)
    holders = [fund() for _ in range(count)]
    for holder in holders:
        trust(server, node, holder, usd)
    pay(server, node, issuer, holders[0].public_key, usd, "100")
    return issuer, usd, holders


def test_same_asset_path_payments_move_the_amount(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    _, usd, (alice, bob) = _holders(server, node, fund, 2)
    submit(
        server,
        node,
        alice,
        lambda b: b.append_path_payment_strict_receive_op(bob.public_key, usd, "30", usd, "25", []),
    )
    # Strict send with a path that repeats the same asset crosses no offer.
    submit(
        server,
        node,
        alice,
        lambda b: b.append_path_payment_strict_send_op(bob.public_key, usd, "10", usd, "10", [usd]),
    )
    assert credit_balance(server, alice.public_key, usd) == Decimal("65")
    assert credit_balance(server, bob.public_key, usd) == Decimal("35")

    carol = fund()
    before = native_balance(server, alice.public_key)
    submit(
        server,
        node,
        alice,
        lambda b: b.append_path_payment_strict_send_op(
            carol.public_key, Asset.native(), "7", Asset.native(), "7", []
        ),
    )
    assert native_balance(server, alice.public_key) == before - Decimal("7") - FEE


def test_path_payment_constraints_and_missing_offers(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    issuer, usd, (alice, bob) = _holders(server, node, fund, 2)
    eur = Asset("EUR", issuer.public_key)

    def codes(add: Callable[[TransactionBuilder], TransactionBuilder]) -> list[object]:
        envelope = sign_all(add(build(server, node, alice)).build(), alice)
        operations = failure_codes(server, envelope)["operations"]
        assert isinstance(operations, list)
        return operations

    over = codes(
        lambda b: b.append_path_payment_strict_receive_op(
            bob.public_key, usd, "9.9999999", usd, "10", []
        )
    )
    assert over == ["op_over_source_max"]
    under = codes(
        lambda b: b.append_path_payment_strict_send_op(
            bob.public_key, usd, "10", usd, "10.0000001", []
        )
    )
    assert under == ["op_under_dest_min"]
    cross = codes(
        lambda b: b.append_path_payment_strict_receive_op(
            bob.public_key, usd, "10", usd, "10", [eur]
        )
    )
    assert cross == ["op_too_few_offers"]
    convert = codes(
        lambda b: b.append_path_payment_strict_send_op(
            bob.public_key, usd, "10", Asset.native(), "1", []
        )
    )
    assert convert == ["op_too_few_offers"]
    # Strict receive credits the destination first: its refusal wins over missing offers.
    stranger = fund()
    no_trust = codes(
        lambda b: b.append_path_payment_strict_receive_op(
            stranger.public_key, usd, "10", eur, "10", []
        )
    )
    assert no_trust == ["op_no_trust"]
    # Strict send debits the source first.
    underfunded = codes(
        lambda b: b.append_path_payment_strict_send_op(
            bob.public_key, usd, "100.0000001", Asset.native(), "1", []
        )
    )
    assert underfunded == ["op_underfunded"]
    missing = codes(
        lambda b: b.append_path_payment_strict_send_op(
            Keypair.random().public_key, usd, "1", usd, "1", []
        )
    )
    assert missing == ["op_no_destination"]
    assert credit_balance(server, alice.public_key, usd) == Decimal("100")
    assert credit_balance(server, bob.public_key, usd) == Decimal("0")


def test_path_payments_respect_authorisation(server: Server, node: StellarNode, fund: Fund) -> None:
    issuer, usd, (alice, bob) = _holders(server, node, fund, 2)
    submit(
        server,
        node,
        issuer,
        lambda b: b.append_set_trust_line_flags_op(
            bob.public_key, usd, clear_flags=AUTHORIZED, set_flags=MAINTAIN
        ),
    )
    to_frozen = sign_all(
        build(server, node, alice)
        .append_path_payment_strict_send_op(bob.public_key, usd, "1", usd, "1", [])
        .build(),
        alice,
    )
    assert failure_codes(server, to_frozen)["operations"] == ["op_not_authorized"]
    submit(
        server,
        node,
        issuer,
        lambda b: b.append_set_trust_line_flags_op(alice.public_key, usd, clear_flags=AUTHORIZED),
    )
    from_frozen = sign_all(
        build(server, node, alice)
        .append_path_payment_strict_receive_op(issuer.public_key, usd, "1", usd, "1", [])
        .build(),
        alice,
    )
    assert failure_codes(server, from_frozen)["operations"] == ["op_src_not_authorized"]


def test_path_payment_malformed(server: Server, node: StellarNode, fund: Fund) -> None:
    # doCheckValid of both operations: amounts must be positive, every asset valid.
    issuer, usd, (alice, bob) = _holders(server, node, fund, 2)
    good = asset_to_xdr(parse_asset_param(f"USD:{issuer.public_key}"))
    bad = asset_to_xdr(parse_asset_param(f"USD:{issuer.public_key}"))
    assert bad.alpha_num4 is not None
    bad.alpha_num4.asset_code = x.AssetCode4(b"\x00USD")
    dest = Keypair.from_public_key(bob.public_key).xdr_muxed_account()

    def receive(send_max: int, amount: int, path: list[x.Asset]) -> x.OperationBody:
        op = x.PathPaymentStrictReceiveOp(
            good, x.Int64(send_max), dest, good, x.Int64(amount), path
        )
        return x.OperationBody(
            x.OperationType.PATH_PAYMENT_STRICT_RECEIVE, path_payment_strict_receive_op=op
        )

    def send(amount: int, dest_min: int, path: list[x.Asset]) -> x.OperationBody:
        op = x.PathPaymentStrictSendOp(good, x.Int64(amount), dest, good, x.Int64(dest_min), path)
        return x.OperationBody(
            x.OperationType.PATH_PAYMENT_STRICT_SEND, path_payment_strict_send_op=op
        )

    before = sequence(server, alice.public_key)
    for body in (
        receive(0, 1, []),
        receive(1, -1, []),
        receive(1, 1, [bad]),
        send(-1, 1, []),
        send(1, 0, []),
        send(1, 1, [good, bad]),
    ):
        codes = raw_op_codes(server, node, alice, body)
        assert codes == {"transaction": "tx_failed", "operations": ["op_malformed"]}
    assert sequence(server, alice.public_key) == before
    assert credit_balance(server, bob.public_key, usd) == Decimal("0")
