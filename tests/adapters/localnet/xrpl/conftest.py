"""Fixtures for the local XRPL network tests: a node on a free port and a client harness.

Tests talk to the node as a client would, with xrpl-py over real HTTP. The harness
closes ledgers explicitly (``ledger_accept`` semantics), so no test waits for a timer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from xrpl.clients import JsonRpcClient
from xrpl.core.binarycodec import encode, encode_for_signing
from xrpl.core.keypairs import sign as sign_message
from xrpl.models.requests import AccountLines, AccountObjects, Request
from xrpl.models.transactions import Transaction
from xrpl.transaction import sign, submit
from xrpl.wallet import Wallet

from adapters.localnet.xrpl import XrplNode


@dataclass(frozen=True)
class Submitted:
    engine_result: str
    tx_hash: str
    final_result: str | None  # TransactionResult in a validated ledger, if it got there


class Harness:
    """Client-side helpers: fund, sign, submit, close, read."""

    def __init__(self, node: XrplNode) -> None:
        assert node.url is not None
        self.node = node
        self.client = JsonRpcClient(node.url)
        # xrpl-py opens a new HTTP client per request (~25 ms each); the harness's own
        # bookkeeping goes over one kept-alive connection to keep the suite fast.
        self.http = httpx.Client(base_url=node.url)

    def fund(self, xrp: int = 1_000) -> Wallet:
        wallet = Wallet.create()
        self.node.fund(wallet.classic_address, xrp)
        return wallet

    def request(self, request: Request) -> dict[str, Any]:
        return self.client.request(request).result

    def raw(self, method: str, **params: Any) -> dict[str, Any]:
        """A request xrpl-py has no model for (admin methods)."""
        answer = self.http.post("/", json={"method": method, "params": [params]})
        result: dict[str, Any] = answer.json()["result"]
        return result

    def close(self) -> None:
        result = self.raw("ledger_accept")
        assert result["status"] == "success", result

    def sign(self, tx: Transaction, wallet: Wallet) -> Transaction:
        """Fill Sequence, Fee and LastLedgerSequence as xrpl-py's autofill would, and sign.

        ``test_xrpl_client_compat.py`` runs xrpl-py's own autofill against the node.
        """
        fields = tx.to_dict()
        if fields.get("sequence") is None and fields.get("ticket_sequence") is None:
            fields["sequence"] = self.next_sequence(wallet.classic_address)
        if fields.get("fee") is None:
            base = int(self.raw("fee")["drops"]["base_fee"])
            fulfillment = fields.get("fulfillment")
            extra = base * (32 + len(bytes.fromhex(fulfillment)) // 16) if fulfillment else 0
            fields["fee"] = str(base + extra)
        if fields.get("last_ledger_sequence") is None:
            fields["last_ledger_sequence"] = self.raw("ledger_current")["ledger_current_index"] + 20
        return sign(type(tx).from_dict(fields), wallet)

    def submit_signed(self, signed: Transaction, *, close: bool = True) -> Submitted:
        result = submit(signed, self.client).result
        tx_hash = signed.get_hash()
        return self._finish(result["engine_result"], tx_hash, close)

    def submit(self, tx: Transaction, wallet: Wallet, *, close: bool = True) -> Submitted:
        return self.submit_signed(self.sign(tx, wallet), close=close)

    def submit_json(
        self, tx_json: dict[str, Any], wallet: Wallet, *, close: bool = True
    ) -> Submitted:
        """Sign a raw transaction JSON (bypassing xrpl-py's model checks) and submit it."""
        blob, tx_hash = sign_json(tx_json, wallet)
        result = self.raw("submit", tx_blob=blob)
        assert result["status"] == "success", result
        return self._finish(result["engine_result"], tx_hash, close)

    def _finish(self, engine_result: str, tx_hash: str, close: bool) -> Submitted:
        if close:
            self.close()
        found = self.raw("tx", transaction=tx_hash, api_version=2)
        final = (
            found["meta"]["TransactionResult"]
            if found.get("validated") and "meta" in found
            else None
        )
        return Submitted(engine_result, tx_hash, final)

    def account(self, address: str, ledger_index: str = "validated") -> dict[str, Any]:
        result = self.raw("account_info", account=address, ledger_index=ledger_index, api_version=2)
        assert result["status"] == "success", result
        data: dict[str, Any] = result["account_data"]
        return data

    def balance(self, address: str) -> int:
        return int(self.account(address)["Balance"])

    def objects(self, address: str, kind: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"account": address, "ledger_index": "validated"}
        if kind is not None:
            params["type"] = kind
        result = self.request(AccountObjects.from_dict(params))
        objects: list[dict[str, Any]] = result["account_objects"]
        return objects

    def lines(self, address: str) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = self.request(
            AccountLines(account=address, ledger_index="validated")
        )["lines"]
        return lines

    def next_sequence(self, address: str) -> int:
        return int(self.account(address, "current")["Sequence"])

    def validated_close_time(self) -> int:
        return int(self.raw("ledger", ledger_index="validated")["ledger"]["close_time"])


def sign_json(tx_json: dict[str, Any], wallet: Wallet) -> tuple[str, str]:
    """Sign a transaction JSON with ``wallet``; return (blob, hash)."""
    tx = dict(tx_json)
    tx["SigningPubKey"] = wallet.public_key
    tx["TxnSignature"] = sign_message(bytes.fromhex(encode_for_signing(tx)), wallet.private_key)
    blob = encode(tx)
    tx_hash = hashlib.sha512(bytes.fromhex("54584E00" + blob)).digest()[:32].hex().upper()
    return blob, tx_hash


@pytest.fixture
def node() -> Iterator[XrplNode]:
    with XrplNode() as running:
        yield running


@pytest.fixture
def ledger(node: XrplNode) -> Iterator[Harness]:
    harness = Harness(node)
    yield harness
    harness.http.close()
