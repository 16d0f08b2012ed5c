"""Operations and their stellar-core result codes, checked through real outcomes."""

from __future__ import annotations

import base64
from collections.abc import Callable
from decimal import Decimal

import pytest
from stellar_sdk import Asset, AuthorizationFlag, Keypair, Server
from stellar_sdk.exceptions import NotFoundError

from adapters.localnet.stellar import StellarNode
from tests.adapters.localnet.stellar.helpers import (
    build,
    credit_balance,
    failure_codes,
    native_balance,
    sign_all,
)

Fund = Callable[[], Keypair]


def issue(
    server: Server, node: StellarNode, issuer: Keypair, holder: Keypair, code: str, amount: str
) -> Asset:
    asset = Asset(code, issuer.public_key)
    server.submit_transaction(
        sign_all(
            build(server, node, holder).append_change_trust_op(asset, limit="1000").build(), holder
        )
    )
    server.submit_transaction(
        sign_all(
            build(server, node, issuer).append_payment_op(holder.public_key, asset, amount).build(),
            issuer,
        )
    )
    return asset


def test_create_account_codes(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob = fund(), fund()
    newcomer = Keypair.random()
    # Below 2 base reserves (1 XLM) the new account could not exist.
    low = sign_all(
        build(server, node, alice)
        .append_create_account_op(newcomer.public_key, "0.9999999")
        .build(),
        alice,
    )
    assert failure_codes(server, low)["operations"] == ["op_low_reserve"]
    exists = sign_all(
        build(server, node, alice).append_create_account_op(bob.public_key, "5").build(), alice
    )
    assert failure_codes(server, exists)["operations"] == ["op_already_exists"]
    too_much = sign_all(
        build(server, node, alice).append_create_account_op(newcomer.public_key, "9999").build(),
        alice,
    )
    # alice has 10,000 XLM less two fees; she must keep 1 XLM of reserve.
    assert failure_codes(server, too_much)["operations"] == ["op_underfunded"]
    with pytest.raises(NotFoundError):
        server.load_account(newcomer.public_key)


def test_native_payment_respects_the_reserve(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob = fund(), fund()
    balance = native_balance(server, alice.public_key)
    # Everything above the 1 XLM reserve and this transaction's fee is spendable...
    spendable = balance - Decimal("1") - Decimal("0.00001")
    over = sign_all(
        build(server, node, alice)
        .append_payment_op(bob.public_key, Asset.native(), str(spendable + Decimal("0.0000001")))
        .build(),
        alice,
    )
    assert failure_codes(server, over)["operations"] == ["op_underfunded"]
    exact = sign_all(
        build(server, node, alice)
        .append_payment_op(bob.public_key, Asset.native(), str(spendable - Decimal("0.00001")))
        .build(),
        alice,
    )
    server.submit_transaction(exact)
    assert native_balance(server, alice.public_key) == Decimal("1")


def test_payment_to_missing_account_is_no_destination(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice = fund()
    ghost = Keypair.random()
    envelope = sign_all(
        build(server, node, alice).append_payment_op(ghost.public_key, Asset.native(), "1").build(),
        alice,
    )
    assert failure_codes(server, envelope)["operations"] == ["op_no_destination"]


def test_credit_asset_trust_lines_and_issuer_rules(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    issuer, holder, stranger = fund(), fund(), fund()
    usd = issue(server, node, issuer, holder, "USDC", "600")
    doc = server.accounts().account_id(holder.public_key).call()
    line = next(b for b in doc["balances"] if b["asset_type"] == "credit_alphanum4")
    assert (line["asset_code"], line["asset_issuer"], line["balance"], line["limit"]) == (
        "USDC",
        issuer.public_key,
        "600.0000000",
        "1000.0000000",
    )
    assert line["is_authorized"] is True
    assert doc["subentry_count"] == 1

    no_trust = sign_all(
        build(server, node, holder).append_payment_op(stranger.public_key, usd, "1").build(), holder
    )
    assert failure_codes(server, no_trust)["operations"] == ["op_no_trust"]

    full = sign_all(
        build(server, node, issuer)
        .append_payment_op(holder.public_key, usd, "400.0000001")
        .build(),
        issuer,
    )
    assert failure_codes(server, full)["operations"] == ["op_line_full"]

    over = sign_all(
        build(server, node, holder)
        .append_payment_op(issuer.public_key, usd, "600.0000001")
        .build(),
        holder,
    )
    assert failure_codes(server, over)["operations"] == ["op_underfunded"]

    no_line = sign_all(
        build(server, node, stranger).append_payment_op(issuer.public_key, usd, "1").build(),
        stranger,
    )
    assert failure_codes(server, no_line)["operations"] == ["op_src_no_trust"]

    # Paying the issuer back needs no trust line on its side: the asset is burned.
    server.submit_transaction(
        sign_all(
            build(server, node, holder).append_payment_op(issuer.public_key, usd, "100").build(),
            holder,
        )
    )
    assert credit_balance(server, holder.public_key, usd) == Decimal("500")
    assert all(
        b["asset_type"] == "native"
        for b in server.accounts().account_id(issuer.public_key).call()["balances"]
    )


def test_change_trust_limits_and_removal(server: Server, node: StellarNode, fund: Fund) -> None:
    issuer, holder = fund(), fund()
    usd = issue(server, node, issuer, holder, "USD", "10")
    below = sign_all(
        build(server, node, holder).append_change_trust_op(usd, limit="9").build(), holder
    )
    assert failure_codes(server, below)["operations"] == ["op_invalid_limit"]
    self_trust = sign_all(
        build(server, node, issuer).append_change_trust_op(usd, limit="9").build(), issuer
    )
    assert failure_codes(server, self_trust)["operations"] == ["op_malformed"]
    missing_issuer = Asset("EUR", Keypair.random().public_key)
    no_issuer = sign_all(
        build(server, node, holder).append_change_trust_op(missing_issuer).build(), holder
    )
    assert failure_codes(server, no_issuer)["operations"] == ["op_no_issuer"]

    server.submit_transaction(
        sign_all(
            build(server, node, holder)
            .append_payment_op(issuer.public_key, usd, "10")
            .append_change_trust_op(usd, limit="0")
            .build(),
            holder,
        )
    )
    doc = server.accounts().account_id(holder.public_key).call()
    assert doc["subentry_count"] == 0
    assert [b["asset_type"] for b in doc["balances"]] == ["native"]


def test_new_subentry_needs_a_base_reserve(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, issuer = fund(), fund()
    poor = Keypair.random()
    # 1 XLM reserve + 2 fees: nothing left for a trust line's extra 0.5 XLM.
    server.submit_transaction(
        sign_all(
            build(server, node, alice)
            .append_create_account_op(poor.public_key, "1.0000200")
            .build(),
            alice,
        )
    )
    envelope = sign_all(
        build(server, node, poor).append_change_trust_op(Asset("USD", issuer.public_key)).build(),
        poor,
    )
    assert failure_codes(server, envelope)["operations"] == ["op_low_reserve"]
    data = sign_all(build(server, node, poor).append_manage_data_op("k", b"v").build(), poor)
    assert failure_codes(server, data)["operations"] == ["op_low_reserve"]
    assert server.accounts().account_id(poor.public_key).call()["subentry_count"] == 0


def test_manage_data_and_account_data(server: Server, node: StellarNode, fund: Fund) -> None:
    alice = fund()
    server.submit_transaction(
        sign_all(
            build(server, node, alice).append_manage_data_op("config.memo_required", b"1").build(),
            alice,
        )
    )
    doc = server.accounts().account_id(alice.public_key).call()
    assert doc["data"] == {"config.memo_required": base64.b64encode(b"1").decode()}
    assert doc["subentry_count"] == 1
    assert server.data(alice.public_key, "config.memo_required").call()["value"] == "MQ=="
    missing = sign_all(
        build(server, node, alice).append_manage_data_op("nope", None).build(), alice
    )
    assert failure_codes(server, missing)["operations"] == ["op_data_name_not_found"]
    server.submit_transaction(
        sign_all(
            build(server, node, alice).append_manage_data_op("config.memo_required", None).build(),
            alice,
        )
    )
    assert server.accounts().account_id(alice.public_key).call()["data"] == {}


def test_account_merge(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob, issuer = fund(), fund(), fund()
    usd = Asset("USD", issuer.public_key)
    server.submit_transaction(
        sign_all(build(server, node, alice).append_change_trust_op(usd).build(), alice)
    )
    blocked = sign_all(
        build(server, node, alice).append_account_merge_op(bob.public_key).build(), alice
    )
    assert failure_codes(server, blocked)["operations"] == ["op_has_sub_entries"]
    server.submit_transaction(
        sign_all(build(server, node, alice).append_change_trust_op(usd, limit="0").build(), alice)
    )

    alice_balance = native_balance(server, alice.public_key)
    bob_before = native_balance(server, bob.public_key)
    merge = sign_all(
        build(server, node, alice).append_account_merge_op(bob.public_key).build(), alice
    )
    server.submit_transaction(merge)
    with pytest.raises(NotFoundError):
        server.load_account(alice.public_key)
    # Merge moves everything left after the merge transaction's own fee.
    assert native_balance(server, bob.public_key) == bob_before + alice_balance - Decimal("0.00001")


def test_set_options_flags_and_home_domain(server: Server, node: StellarNode, fund: Fund) -> None:
    issuer, holder = fund(), fund()
    server.submit_transaction(
        sign_all(
            build(server, node, issuer)
            .append_set_options_op(
                set_flags=AuthorizationFlag.AUTHORIZATION_REQUIRED, home_domain="bank.example"
            )
            .build(),
            issuer,
        )
    )
    doc = server.accounts().account_id(issuer.public_key).call()
    assert doc["flags"]["auth_required"] is True
    assert doc["home_domain"] == "bank.example"
    # With auth_required, a new trust line starts unauthorised: it cannot receive.
    usd = Asset("USD", issuer.public_key)
    server.submit_transaction(
        sign_all(build(server, node, holder).append_change_trust_op(usd).build(), holder)
    )
    line = next(
        b
        for b in server.accounts().account_id(holder.public_key).call()["balances"]
        if b["asset_type"] != "native"
    )
    assert line["is_authorized"] is False
    payment = sign_all(
        build(server, node, issuer).append_payment_op(holder.public_key, usd, "1").build(), issuer
    )
    assert failure_codes(server, payment)["operations"] == ["op_not_authorized"]
    clawback_alone = sign_all(
        build(server, node, issuer)
        .append_set_options_op(set_flags=AuthorizationFlag.AUTHORIZATION_CLAWBACK_ENABLED)
        .build(),
        issuer,
    )
    assert failure_codes(server, clawback_alone)["operations"] == ["op_auth_revocable_required"]
