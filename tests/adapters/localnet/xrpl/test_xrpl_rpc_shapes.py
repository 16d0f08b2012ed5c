"""The shapes clients read: account_tx nesting, DeliverMax, tx ranges, type filters,
deposit_authorized and ledger_entry for DepositPreauth.

Checked against rippled's RPC handlers (xrpld/rpc/handlers): AccountTx.cpp
(populateJsonResponse), Tx.cpp (doTxHelp / searched_all), RPCHelpers.cpp
(insertDeliverMax, chooseLedgerEntryType, isAccountObjectsValidType),
DepositAuthorized.cpp and LedgerEntry.cpp (parseDepositPreauth).
"""

from __future__ import annotations

from typing import Any

import pytest
from xrpl.core.binarycodec import encode
from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.requests import AccountTx, DepositAuthorized, Tx
from xrpl.models.transactions import (
    AccountSet,
    AccountSetAsfFlag,
    DepositPreauth,
    Payment,
    TrustSet,
)
from xrpl.wallet import Wallet

GENESIS = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"
H = "AB" * 32  # a well-formed hash no transaction has


def _pay(ledger, wallet: Wallet, amount: str = "1234") -> str:
    done = ledger.submit(
        Payment(account=wallet.classic_address, destination=GENESIS, amount=amount), wallet
    )
    assert done.final_result == "tesSUCCESS"
    return done.tx_hash


def test_account_tx_v1_nests_under_tx_and_v2_under_tx_json(ledger) -> None:
    alice = ledger.fund()
    tx_hash = _pay(ledger, alice)
    v1 = ledger.raw("account_tx", account=alice.classic_address, api_version=1)
    first = v1["transactions"][0]
    assert set(first) == {"meta", "tx", "validated"}
    assert first["tx"]["hash"] == tx_hash
    assert first["tx"]["Amount"] == first["tx"]["DeliverMax"] == "1234"
    assert isinstance(first["tx"]["inLedger"], int) and isinstance(first["tx"]["date"], int)
    assert first["meta"]["delivered_amount"] == "1234"

    v2 = ledger.request(AccountTx(account=alice.classic_address))["transactions"][0]
    assert {"tx_json", "hash", "ledger_index", "close_time_iso", "meta", "validated"} <= set(v2)
    assert "tx" not in v2
    assert v2["tx_json"]["DeliverMax"] == "1234" and "Amount" not in v2["tx_json"]


def test_account_tx_binary_names_the_meta_blob_per_version(ledger) -> None:
    alice = ledger.fund()
    _pay(ledger, alice)
    v1 = ledger.raw("account_tx", account=alice.classic_address, binary=True, api_version=1)
    v2 = ledger.raw("account_tx", account=alice.classic_address, binary=True, api_version=2)
    assert {"tx_blob", "meta", "ledger_index", "validated"} == set(v1["transactions"][0])
    assert {"tx_blob", "meta_blob", "ledger_index", "validated"} == set(v2["transactions"][0])


def test_deliver_max_in_tx_ledger_and_submit(ledger) -> None:
    alice = ledger.fund()
    signed = ledger.sign(
        Payment(account=alice.classic_address, destination=GENESIS, amount="777"), alice
    )
    submitted = ledger.raw("submit", tx_blob=encode(signed.to_xrpl()), api_version=2)
    assert submitted["tx_json"]["DeliverMax"] == "777" and "Amount" not in submitted["tx_json"]
    ledger.close()
    v1 = ledger.raw("tx", transaction=signed.get_hash(), api_version=1)
    assert v1["Amount"] == v1["DeliverMax"] == "777"
    index = v1["ledger_index"]
    expanded = ledger.raw(
        "ledger", ledger_index=index, transactions=True, expand=True, api_version=2
    )["ledger"]["transactions"][0]
    assert expanded["tx_json"]["DeliverMax"] == "777" and "Amount" not in expanded["tx_json"]
    # Other types are shown as they are.
    setter = ledger.submit(AccountSet(account=alice.classic_address), alice)
    assert (
        "DeliverMax" not in ledger.raw("tx", transaction=setter.tx_hash, api_version=2)["tx_json"]
    )


def test_tx_range_miss_says_whether_every_ledger_was_searched(ledger) -> None:
    alice = ledger.fund()
    tx_hash = _pay(ledger, alice)
    last = ledger.node.chain.last_closed.header.sequence
    found = ledger.request(Tx(transaction=tx_hash, min_ledger=2, max_ledger=last))
    assert found["validated"] is True
    missing = H
    held = ledger.raw("tx", transaction=missing, min_ledger=2, max_ledger=last)
    assert (held["error"], held["searched_all"]) == ("txnNotFound", True)
    ahead = ledger.raw("tx", transaction=missing, min_ledger=2, max_ledger=last + 5)
    assert (ahead["error"], ahead["searched_all"]) == ("txnNotFound", False)
    # Without a range rippled cannot say, and says nothing.
    assert "searched_all" not in ledger.raw("tx", transaction=missing)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"transaction": H, "min_ledger": 10, "max_ledger": 5}, "invalidLgrRange"),
        ({"transaction": H, "min_ledger": -1, "max_ledger": 5}, "invalidLgrRange"),
        ({"transaction": H, "min_ledger": "x", "max_ledger": 5}, "invalidLgrRange"),
        ({"transaction": H, "min_ledger": 1, "max_ledger": 1002}, "excessiveLgrRange"),
        ({"transaction": "zz"}, "notImpl"),
        ({"transaction": 5}, "notImpl"),
        ({"transaction": H, "ctid": "C000000100000000"}, "invalidParams"),
        ({}, "invalidParams"),
        ({"ctid": "Cnothexnothex00"}, "invalidParams"),
        ({"ctid": "C000000300000007"}, "wrongNetwork"),
    ],
)
def test_tx_bad_input(ledger, params: dict[str, Any], error: str) -> None:
    result = ledger.raw("tx", **params)
    assert result["error"] == error, result
    assert result["status"] == "error"


RIPPLED_TYPE_FILTERS = [
    "account",
    "amm",
    "bridge",
    "check",
    "credential",
    "deposit_preauth",
    "did",
    "escrow",
    "mpt_issuance",
    "mptoken",
    "nft_offer",
    "nft_page",
    "offer",
    "oracle",
    "payment_channel",
    "signer_list",
    "state",
    "ticket",
    "xchain_owned_claim_id",
    "xchain_owned_create_account_claim_id",
    "RippleState",
    "escrow",
    "payChannel",
]


@pytest.mark.parametrize("kind", RIPPLED_TYPE_FILTERS)
def test_account_objects_accepts_rippleds_type_filters(ledger, kind: str) -> None:
    result = ledger.raw("account_objects", account=GENESIS, type=kind)
    assert result["status"] == "success", result
    assert result["account_objects"] == []


@pytest.mark.parametrize("kind", ["amendments", "directory", "fee", "hashes", "nft", 7, "STATE"])
def test_account_objects_refuses_unknown_or_unowned_types(ledger, kind: Any) -> None:
    assert ledger.raw("account_objects", account=GENESIS, type=kind)["error"] == "invalidParams"


def test_account_objects_filters_by_canonical_name(ledger) -> None:
    issuer, holder = ledger.fund(), ledger.fund()
    limit = IssuedCurrencyAmount(currency="USD", issuer=issuer.classic_address, value="100")
    ledger.submit(TrustSet(account=holder.classic_address, limit_amount=limit), holder)
    lines = ledger.raw("account_objects", account=holder.classic_address, type="ripplestate")
    assert [o["LedgerEntryType"] for o in lines["account_objects"]] == ["RippleState"]
    assert ledger.objects(holder.classic_address, "ticket") == []


def _deposit_auth(ledger) -> tuple[Wallet, Wallet]:
    receiver, payer = ledger.fund(), ledger.fund()
    done = ledger.submit(
        AccountSet(account=receiver.classic_address, set_flag=AccountSetAsfFlag.ASF_DEPOSIT_AUTH),
        receiver,
    )
    assert done.final_result == "tesSUCCESS"
    return receiver, payer


def test_deposit_authorized_follows_deposit_auth_and_preauth(ledger) -> None:
    stranger = ledger.fund()
    before = ledger.request(
        DepositAuthorized(source_account=stranger.classic_address, destination_account=GENESIS)
    )
    assert before["deposit_authorized"] is True
    receiver, payer = _deposit_auth(ledger)
    ask = DepositAuthorized(
        source_account=payer.classic_address,
        destination_account=receiver.classic_address,
        ledger_index="validated",
    )
    assert ledger.request(ask)["deposit_authorized"] is False
    itself = ledger.raw(
        "deposit_authorized",
        source_account=receiver.classic_address,
        destination_account=receiver.classic_address,
    )
    assert itself["deposit_authorized"] is True
    ledger.submit(
        DepositPreauth(account=receiver.classic_address, authorize=payer.classic_address), receiver
    )
    answer = ledger.request(ask)
    assert answer["deposit_authorized"] is True
    assert answer["validated"] is True and "ledger_hash" in answer
    entry = ledger.raw(
        "ledger_entry",
        deposit_preauth={"owner": receiver.classic_address, "authorized": payer.classic_address},
    )
    assert entry["node"]["LedgerEntryType"] == "DepositPreauth"
    assert entry["node"]["Authorize"] == payer.classic_address
    by_index = ledger.raw("ledger_entry", deposit_preauth=entry["index"])
    assert by_index["node"] == entry["node"]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"destination_account": GENESIS}, "invalidParams"),
        ({"source_account": GENESIS}, "invalidParams"),
        ({"source_account": 5, "destination_account": GENESIS}, "invalidParams"),
        ({"source_account": "rBAD", "destination_account": GENESIS}, "actMalformed"),
        ({"source_account": GENESIS, "destination_account": "nope"}, "actMalformed"),
        ({"source_account": "UNKNOWN", "destination_account": GENESIS}, "srcActNotFound"),
        ({"source_account": GENESIS, "destination_account": "UNKNOWN"}, "dstActNotFound"),
        (
            {"source_account": GENESIS, "destination_account": GENESIS, "ledger_index": 99},
            "lgrNotFound",
        ),
        (
            {"source_account": GENESIS, "destination_account": GENESIS, "credentials": []},
            "invalidParams",
        ),
    ],
)
def test_deposit_authorized_bad_input(ledger, params: dict[str, Any], error: str) -> None:
    unknown = Wallet.create().classic_address
    params = {k: unknown if v == "UNKNOWN" else v for k, v in params.items()}
    result = ledger.raw("deposit_authorized", **params)
    assert result["error"] == error, result


@pytest.mark.parametrize(
    "spec",
    [
        {"owner": GENESIS},
        {"owner": "nope", "authorized": GENESIS},
        {"owner": GENESIS, "authorized": 5},
        7,
    ],
)
def test_ledger_entry_deposit_preauth_bad_input(ledger, spec: Any) -> None:
    result = ledger.raw("ledger_entry", deposit_preauth=spec)
    assert result["status"] == "error"
    assert result["error"] in ("invalidParams", "entryNotFound")


def test_tx_history_lists_validated_transactions_newest_first(ledger) -> None:
    # TxHistory.cpp: API v1 only, 20 a page from ``start``, with DeliverMax.
    alice = ledger.fund()
    first = _pay(ledger, alice, "11")
    second = _pay(ledger, alice, "22")
    page = ledger.raw("tx_history", start=0, api_version=1)
    assert page["index"] == 0
    assert [t["hash"] for t in page["txs"][:2]] == [second, first]
    assert page["txs"][0]["DeliverMax"] == page["txs"][0]["Amount"] == "22"
    assert ledger.raw("tx_history", start=1, api_version=1)["txs"][0]["hash"] == first


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"api_version": 2, "start": 0}, "unknownCmd"),
        ({"api_version": 1}, "invalidParams"),
        ({"api_version": 1, "start": -1}, "invalidParams"),
        ({"api_version": 1, "start": "zero"}, "invalidParams"),
    ],
)
def test_tx_history_bad_input(ledger, params: dict[str, Any], error: str) -> None:
    assert ledger.raw("tx_history", **params)["error"] == error


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("account_tx", {"account": GENESIS, "limit": "many"}),
        ("account_tx", {"account": GENESIS, "ledger_index_min": "low"}),
        ("account_tx", {"account": GENESIS, "marker": {"seq": "x"}}),
    ],
)
def test_a_handler_failure_is_an_internal_error_not_a_dropped_connection(
    ledger, method: str, params: dict[str, Any]
) -> None:
    # RPCHandler.cpp: an exception inside a handler is answered as rpcINTERNAL.
    result = ledger.raw(method, **params)
    assert result["status"] == "error"
    assert result["error"] in ("internal", "invalidParams")
    assert ledger.raw("ping")["status"] == "success"
