"""POST /transactions_async: stellar-core's verdict on queueing, relayed at once.

Horizon answers 201 PENDING, 409 DUPLICATE, 400 ERROR (with the TransactionResult) and
503 TRY_AGAIN_LATER, each a body ``{"tx_status", "hash"[, "error_result_xdr"]}``, and
problems for what never reaches core (transaction_malformed) or a failing server. The
answer comes before any ledger closes: these tests halt the close timer and close
ledgers themselves, so "queued" and "in a ledger" are told apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from stellar_sdk import Asset, Keypair, Server, TransactionBuilder
from stellar_sdk import xdr as x
from stellar_sdk.exceptions import (
    BadRequestError,
    BadResponseError,
    BaseHorizonError,
    ConnectionError,
    NotFoundError,
)
from stellar_sdk.transaction_envelope import TransactionEnvelope

from adapters.localnet.stellar import StellarNode
from tests.adapters.localnet.stellar.helpers import build, native_balance, sequence, sign_all

Fund = Callable[[], Keypair]
T = x.TransactionResultCode


def payment(
    server: Server, node: StellarNode, source: Keypair, dest: Keypair, **kw: Any
) -> TransactionEnvelope:
    return sign_all(
        build(server, node, source, **kw)
        .append_payment_op(dest.public_key, Asset.native(), "5")
        .build(),
        source,
    )


def send(server: Server, envelope: TransactionEnvelope) -> tuple[int, dict[str, Any]]:
    """Submit through stellar-sdk; the HTTP status and body, whether it raised or not
    (stellar-sdk raises for 400, 409 and 503 and keeps the body as text)."""
    try:
        return 201, server.submit_transaction_async(envelope, skip_memo_required_check=True)
    except BaseHorizonError as exc:
        return exc.status, json.loads(exc.message)


def in_history(server: Server, envelope: TransactionEnvelope) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = server.transactions().transaction(envelope.hash_hex()).call()
    except NotFoundError:
        return None
    return found


def error_code(body: dict[str, Any]) -> x.TransactionResultCode:
    assert body["tx_status"] == "ERROR", body
    code: x.TransactionResultCode = x.TransactionResult.from_xdr(
        body["error_result_xdr"]
    ).result.code
    return code


# -- stellar-core's statuses ------------------------------------------------------------


def test_pending_answers_before_the_ledger_closes(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()  # ledgers close when the test says so
    before = native_balance(server, bob.public_key)
    envelope = payment(server, node, alice, bob)
    reply = requests.post(
        f"{node.base_url}/transactions_async", data={"tx": envelope.to_xdr()}, timeout=5
    )
    assert reply.status_code == 201
    assert reply.headers["Content-Type"].startswith("application/hal+json")
    assert reply.json() == {"tx_status": "PENDING", "hash": envelope.hash_hex()}
    assert node.pending_count == 1
    assert in_history(server, envelope) is None, "queued, not in a ledger yet"
    ledger = node.close_ledger()
    found = in_history(server, envelope)
    assert found is not None and found["successful"] is True and found["ledger"] == ledger
    assert native_balance(server, bob.public_key) == before + 5


def test_sdk_returns_the_pending_body(server: Server, node: StellarNode, fund: Fund) -> None:
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()  # ledgers close when the test says so
    envelope = payment(server, node, alice, bob)
    answer = server.submit_transaction_async(envelope, skip_memo_required_check=True)
    assert answer == {"tx_status": "PENDING", "hash": envelope.hash_hex()}


def test_resubmitting_a_queued_envelope_is_duplicate(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()  # ledgers close when the test says so
    before = native_balance(server, bob.public_key)
    envelope = payment(server, node, alice, bob)
    assert send(server, envelope)[0] == 201
    with pytest.raises(BadRequestError) as caught:
        server.submit_transaction_async(envelope, skip_memo_required_check=True)
    assert caught.value.status == 409
    assert send(server, envelope) == (409, {"tx_status": "DUPLICATE", "hash": envelope.hash_hex()})
    assert node.pending_count == 1
    node.close_ledger()
    found = in_history(server, envelope)
    assert found is not None and found["successful"] is True
    assert native_balance(server, bob.public_key) == before + 5, "applied once"


def test_an_applied_envelope_is_answered_bad_seq_not_from_history(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    """Horizon's async handler relays core, which knows only that the sequence number is
    used: tx_bad_seq, although the transaction is in a ledger (the sync route answers
    the transaction from history instead)."""
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()  # ledgers close when the test says so
    envelope = payment(server, node, alice, bob)
    send(server, envelope)
    node.close_ledger()
    status, body = send(server, envelope)
    assert (status, body["hash"]) == (400, envelope.hash_hex())
    assert error_code(body) == T.txBAD_SEQ
    assert server.submit_transaction(envelope)["successful"] is True


def test_a_second_transaction_of_a_queued_account_is_try_again_later(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    """stellar-core queues one transaction per source account: another one (a later
    sequence number, or the same one in a different transaction) is TRY_AGAIN_LATER,
    and nothing of it is queued; sent again once the first applied, it is taken."""
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()  # ledgers close when the test says so
    account = server.load_account(alice.public_key)
    first = payment(server, node, alice, bob)
    same_seq = sign_all(
        TransactionBuilder(account, node.network_passphrase, base_fee=100)
        .append_payment_op(bob.public_key, Asset.native(), "7")
        .add_time_bounds(0, node.clock.now() + 300)
        .build(),
        alice,
    )
    later = sign_all(
        TransactionBuilder(account, node.network_passphrase, base_fee=100)
        .append_payment_op(bob.public_key, Asset.native(), "1")
        .add_time_bounds(0, node.clock.now() + 300)
        .build(),
        alice,
    )
    assert send(server, first)[0] == 201
    for other in (same_seq, later):
        with pytest.raises(BadResponseError) as caught:
            server.submit_transaction_async(other, skip_memo_required_check=True)
        assert caught.value.status == 503
        assert send(server, other) == (
            503,
            {"tx_status": "TRY_AGAIN_LATER", "hash": other.hash_hex()},
        )
    assert node.pending_count == 1
    node.close_ledger()
    assert in_history(server, same_seq) is None and in_history(server, later) is None
    # the same-sequence one can never apply now; the later one can, and does
    assert error_code(send(server, same_seq)[1]) == T.txBAD_SEQ
    assert send(server, later)[0] == 201
    node.close_ledger()
    found = in_history(server, later)
    assert found is not None and found["successful"] is True


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("bad_seq", T.txBAD_SEQ),
        ("bad_auth", T.txBAD_AUTH),
        ("insufficient_fee", T.txINSUFFICIENT_FEE),
        ("too_early", T.txTOO_EARLY),
        ("too_late", T.txTOO_LATE),
    ],
)
def test_refusals_before_a_ledger_are_errors_with_the_result(
    server: Server, node: StellarNode, fund: Fund, case: str, expected: x.TransactionResultCode
) -> None:
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()  # ledgers close when the test says so
    account = server.load_account(alice.public_key)
    now = node.clock.now()
    fee, bounds, signer = 100, (0, now + 300), alice
    if case == "bad_seq":
        account.increment_sequence_number()  # one ahead of the next valid number
    elif case == "bad_auth":
        signer = Keypair.random()
    elif case == "insufficient_fee":
        fee = 50
    elif case == "too_early":
        bounds = (now + 3600, 0)
    elif case == "too_late":
        bounds = (0, now - 3600)
    envelope = sign_all(
        TransactionBuilder(account, node.network_passphrase, base_fee=fee)
        .append_payment_op(bob.public_key, Asset.native(), "5")
        .add_time_bounds(*bounds)
        .build(),
        signer,
    )
    before = (native_balance(server, alice.public_key), sequence(server, alice.public_key))
    status, body = send(server, envelope)
    assert (status, body["hash"]) == (400, envelope.hash_hex())
    assert set(body) == {"tx_status", "hash", "error_result_xdr"}
    assert error_code(body) == expected
    assert node.pending_count == 0, "nothing queued"
    node.close_ledger()
    assert in_history(server, envelope) is None
    after = (native_balance(server, alice.public_key), sequence(server, alice.public_key))
    assert after == before, "no fee, no sequence number"


def test_an_undecodable_envelope_is_transaction_malformed(node: StellarNode) -> None:
    for form in ({"tx": "AAAA"}, {}):
        reply = requests.post(f"{node.base_url}/transactions_async", data=form, timeout=5)
        assert reply.status_code == 400
        assert reply.headers["Content-Type"].startswith("application/problem+json")
        assert reply.json()["type"] == "https://stellar.org/horizon-errors/transaction_malformed"


def test_a_fee_bump_is_queued_under_its_outer_hash(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    # stellar-core TransactionQueue::tryAdd takes fee bumps; Horizon answers the outer hash.
    alice, bob, sponsor = fund(), fund(), fund()
    node.faults.halt_ledgers()  # ledgers close when the test says so
    inner = payment(server, node, alice, bob)
    bump = TransactionBuilder.build_fee_bump_transaction(
        sponsor.public_key, 200, inner, node.network_passphrase
    )
    bump.sign(sponsor)
    status, body = send(server, bump)  # type: ignore[arg-type]
    assert (status, body) == (201, {"tx_status": "PENDING", "hash": bump.hash_hex()})
    node.close_ledger()
    assert server.transactions().transaction(bump.hash_hex()).call()["successful"]


def test_the_sync_route_waits_for_a_transaction_queued_by_the_async_one(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    """One queue behind both routes: POST /transactions of an envelope already queued
    (DUPLICATE to core) answers once its ledger closes."""
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()
    envelope = payment(server, node, alice, bob)
    assert send(server, envelope)[0] == 201
    node.faults.resume_ledgers()
    answer = server.submit_transaction(envelope)
    assert answer["successful"] is True and answer["hash"] == envelope.hash_hex()


# -- faults -----------------------------------------------------------------------------------


def test_a_dropped_answer_leaves_the_transaction_queued(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()  # ledgers close when the test says so
    envelope = payment(server, node, alice, bob)
    node.faults.drop_responses(1)
    with pytest.raises(ConnectionError):
        server.submit_transaction_async(envelope, skip_memo_required_check=True)
    assert node.pending_count == 1, "queued although the client never heard so"
    assert send(server, envelope)[0] == 409
    node.close_ledger()
    found = in_history(server, envelope)
    assert found is not None and found["successful"] is True


def test_a_drop_is_kept_for_an_answer_that_queued_something(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    """A refusal is answered even with a drop pending: nothing was taken."""
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()  # ledgers close when the test says so
    late = sign_all(
        TransactionBuilder(
            server.load_account(alice.public_key), node.network_passphrase, base_fee=100
        )
        .append_payment_op(bob.public_key, Asset.native(), "5")
        .add_time_bounds(0, node.clock.now() - 3600)
        .build(),
        alice,
    )
    node.faults.drop_responses(1)
    assert send(server, late)[0] == 400
    assert node.faults.snapshot()["drop_responses"] == 1
    with pytest.raises(ConnectionError):
        send(server, payment(server, node, alice, bob))
    assert node.faults.snapshot()["drop_responses"] == 0


def test_a_504_after_apply_is_the_sync_routes_alone(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()  # ledgers close when the test says so
    node.faults.timeout_responses(1)
    assert send(server, payment(server, node, alice, bob))[0] == 201
    assert node.faults.snapshot()["timeout_responses"] == 1


def test_injected_rejections_on_the_async_route(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()  # ledgers close when the test says so
    envelope = payment(server, node, alice, bob)
    node.faults.reject_submissions(1, "tx_insufficient_fee")
    status, body = send(server, envelope)
    assert (status, body["hash"]) == (400, envelope.hash_hex())
    assert error_code(body) == T.txINSUFFICIENT_FEE
    for http_status in (503, 500):
        node.faults.reject_submissions(1, http_status)
        with pytest.raises(BadResponseError) as caught:
            server.submit_transaction_async(envelope, skip_memo_required_check=True)
        assert caught.value.status == http_status
        assert caught.value.type is not None and "tx_status" not in caught.value.message
    assert node.pending_count == 0
    assert send(server, envelope)[0] == 201


def test_a_partition_refuses_the_async_route_and_queues_nothing(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()  # ledgers close when the test says so
    envelope = payment(server, node, alice, bob)
    node.faults.partition()
    with pytest.raises(ConnectionError):
        server.submit_transaction_async(envelope, skip_memo_required_check=True)
    assert node.pending_count == 0
    node.faults.heal()
    assert send(server, envelope)[0] == 201


def test_a_delay_slows_the_answer_not_the_verdict(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()  # ledgers close when the test says so
    envelope = payment(server, node, alice, bob)
    node.faults.delay(0.3, count=1)
    started = time.monotonic()
    assert send(server, envelope) == (201, {"tx_status": "PENDING", "hash": envelope.hash_hex()})
    assert time.monotonic() - started >= 0.3


def test_faults_through_the_admin_endpoint_apply_to_the_async_route(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    alice, bob = fund(), fund()
    node.faults.halt_ledgers()  # ledgers close when the test says so
    reply = requests.post(
        f"{node.base_url}/_admin/faults",
        json={"action": "reject_submissions", "count": 1, "code": "tx_too_late"},
        timeout=5,
    )
    assert reply.status_code == 200
    assert error_code(send(server, payment(server, node, alice, bob))[1]) == T.txTOO_LATE
