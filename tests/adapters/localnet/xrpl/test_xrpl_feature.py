"""The ``feature`` method and the switches that choose a node's amendments.

Checked against rippled's ``Feature1.cpp`` (xrpld/rpc/handlers) and
``AmendmentTable::getJson`` (xrpld/app/misc/detail/AmendmentTable.cpp): ids are the
SHA-512Half of the name (libxrpl/protocol/Feature.cpp), an unknown name or id is
``badFeature``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from xrpl.models.requests import Feature

from adapters.localnet.xrpl import XrplNode
from settlement.cli.nodes import node_app
from tests.adapters.localnet.xrpl.conftest import Harness

TOKEN_ESCROW_ID = hashlib.sha512(b"TokenEscrow").digest()[:32].hex().upper()


def test_feature_lists_every_implemented_amendment(ledger) -> None:
    features = ledger.request(Feature())["features"]
    assert features[TOKEN_ESCROW_ID] == {
        "enabled": True,
        "name": "TokenEscrow",
        "supported": True,
        "vetoed": False,
    }
    names = {f["name"] for f in features.values()}
    assert {"DepositAuth", "DepositPreauth", "DeepFreeze", "TicketBatch"} <= names
    # Amendments of transaction types the node does not build stay unlisted.
    assert not names & {"AMM", "NonFungibleTokensV1_1", "Checks", "PayChan", "Clawback"}
    for fid, body in features.items():
        assert fid == hashlib.sha512(body["name"].encode()).digest()[:32].hex().upper()


def test_feature_by_name_and_by_id(ledger) -> None:
    by_name = ledger.request(Feature(feature="TokenEscrow"))
    assert by_name[TOKEN_ESCROW_ID]["name"] == "TokenEscrow"
    by_id = ledger.request(Feature(feature=TOKEN_ESCROW_ID.lower()))
    assert by_id[TOKEN_ESCROW_ID]["enabled"] is True


@pytest.mark.parametrize("wanted", ["NoSuchAmendment", "AMM", "AB" * 32, "", 7, {"a": 1}])
def test_unknown_feature_is_bad_feature(ledger, wanted: Any) -> None:
    result = ledger.raw("feature", feature=wanted)
    assert (result["error"], result["error_code"]) == ("badFeature", 40)
    assert result["error_message"] == "Feature unknown or invalid."


def test_veto_is_a_vote_not_a_rule(ledger) -> None:
    vetoed = ledger.raw("feature", feature="TokenEscrow", vetoed=True)
    assert vetoed[TOKEN_ESCROW_ID]["vetoed"] is True
    assert vetoed[TOKEN_ESCROW_ID]["enabled"] is True
    assert ledger.raw("feature", feature="TokenEscrow", vetoed="yes")["error"] == "invalidParams"
    cleared = ledger.raw("feature", feature="TokenEscrow", vetoed=False)
    assert cleared[TOKEN_ESCROW_ID]["vetoed"] is False


def test_a_node_with_token_escrow_off_says_so() -> None:
    with XrplNode(amendments={"TokenEscrow": False}) as node:
        harness = Harness(node)
        try:
            answer = harness.request(Feature(feature="TokenEscrow"))
            assert answer[TOKEN_ESCROW_ID]["enabled"] is False
            deep = harness.raw("feature", feature="DeepFreeze")
            assert next(iter(deep.values()))["enabled"] is True
        finally:
            harness.http.close()


def test_amendment_choice_survives_a_restart(tmp_path: Path) -> None:
    with XrplNode(data_dir=tmp_path, amendments={"TokenEscrow": False}) as node:
        node.close_ledger()
    with XrplNode(data_dir=tmp_path) as restarted:
        assert "TokenEscrow" not in restarted.chain.amendments
    with XrplNode(data_dir=tmp_path, amendments={"TokenEscrow": True}) as chosen:
        assert "TokenEscrow" in chosen.chain.amendments


def test_cli_passes_amendments_and_network_id(monkeypatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("adapters.localnet.xrpl.run_node", lambda **kw: seen.update(kw))
    result = CliRunner().invoke(
        node_app, ["xrpl", "--amendments", "TokenEscrow=off,DeepFreeze=on", "--network-id", "9"]
    )
    assert result.exit_code == 0, result.output
    assert seen["amendments"] == {"TokenEscrow": False, "DeepFreeze": True}
    assert seen["network_id"] == 9
    refused = CliRunner().invoke(node_app, ["xrpl", "--amendments", "AMM=on"])
    assert refused.exit_code != 0
    assert "AMM" in refused.output
