"""Both adapters publish a 32-byte audit root and read it back, on the local networks;
the networks keep the memos as the public ones do (XRPL ``tx`` returns the Memos,
Horizon a hash memo in base64)."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from adapters.chain import ANCHOR_MEMO_TYPE, Anchoring, Applied, ChainName, SignedSubmission
from settlement import bootstrap
from settlement.demo.world import LocalWorld


@pytest.fixture(scope="module")
def world() -> Iterator[LocalWorld]:
    built = bootstrap.local_world(usdc=Decimal(10), stellar_channels=0)
    try:
        yield built
    finally:
        built.close()


def _applied(chain: Anchoring, submission: SignedSubmission) -> Applied:
    outcome = chain.submit(submission)
    deadline = time.monotonic() + 20
    while not isinstance(outcome, Applied) and time.monotonic() < deadline:
        time.sleep(0.05)
        outcome = chain.status(submission)
    assert isinstance(outcome, Applied), outcome
    return outcome


def test_xrpl_anchor_is_an_account_set_with_the_root_in_a_memo(world: LocalWorld) -> None:
    anchor = world.xrpl.account()
    world.keystore.add_xrpl(anchor)
    chain = world.chains[ChainName.XRPL]
    assert isinstance(chain, Anchoring)
    root = hashlib.sha256(b"xrpl root").digest()
    submission = chain.prepare_anchor(anchor.classic_address, root)
    assert submission.purpose is None and submission.expires_ledger is not None
    applied = _applied(chain, submission)

    raw = world.xrpl.rpc("tx", transaction=submission.tx_hash)
    tx_json = raw.get("tx_json", raw)
    assert tx_json["TransactionType"] == "AccountSet"
    assert "SetFlag" not in tx_json and "ClearFlag" not in tx_json
    memo = tx_json["Memos"][0]["Memo"]
    assert bytes.fromhex(memo["MemoType"]) == ANCHOR_MEMO_TYPE.encode()
    assert bytes.fromhex(memo["MemoData"]) == root

    read = chain.anchor_of(submission.tx_hash)
    assert read is not None
    assert (read.root, read.account, read.validated, read.successful) == (
        root,
        anchor.classic_address,
        True,
        True,
    )
    assert (read.ledger_index, read.ledger_hash) == (applied.ledger_index, applied.ledger_hash)


def test_stellar_anchor_carries_the_root_as_memo_hash(world: LocalWorld) -> None:
    anchor = world.stellar.account()
    world.keystore.add_stellar(anchor)
    chain = world.chains[ChainName.STELLAR]
    assert isinstance(chain, Anchoring)
    root = hashlib.sha256(b"stellar root").digest()
    submission = chain.prepare_anchor(anchor.public_key, root)
    assert submission.purpose is None and submission.expires_at is not None
    applied = _applied(chain, submission)

    raw = world.stellar.server.transactions().transaction(submission.tx_hash).call()
    assert raw["memo_type"] == "hash"
    assert base64.b64decode(raw["memo"]) == root
    data = world.stellar.server.accounts().account_id(anchor.public_key).call()["data"]
    assert base64.b64decode(data["settlement/anchor"]) == root

    read = chain.anchor_of(submission.tx_hash)
    assert read is not None
    assert (read.root, read.account, read.validated, read.successful) == (
        root,
        anchor.public_key,
        True,
        True,
    )
    assert (read.ledger_index, read.ledger_hash) == (applied.ledger_index, applied.ledger_hash)


def test_a_transaction_that_is_no_anchor_reads_without_a_root(world: LocalWorld) -> None:
    xrpl = world.chains[ChainName.XRPL]
    assert isinstance(xrpl, Anchoring)
    assert xrpl.anchor_of("00" * 32) is None
    stellar = world.chains[ChainName.STELLAR]
    assert isinstance(stellar, Anchoring)
    assert stellar.anchor_of("00" * 32) is None


def test_a_root_is_32_bytes(world: LocalWorld) -> None:
    chain = world.chains[ChainName.XRPL]
    assert isinstance(chain, Anchoring)
    with pytest.raises(ValueError, match="32 bytes"):
        chain.prepare_anchor(world.agent_xrpl.classic_address, b"short")
