"""Protocol constants and encodings checked against xrpl-py's definitions and codecs."""

from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources

from hypothesis import given
from hypothesis import strategies as st

from adapters.localnet.xrpl import amounts, codes, conditions, protocol


def _definitions() -> dict:
    path = resources.files("xrpl.core.binarycodec.definitions").joinpath("definitions.json")
    return json.loads(path.read_text())


def test_flags_match_the_protocol_definitions() -> None:
    d = _definitions()
    account = d["LEDGER_ENTRY_FLAGS"]["AccountRoot"]
    line = d["LEDGER_ENTRY_FLAGS"]["RippleState"]
    asf = d["ACCOUNT_SET_FLAGS"]
    assert account["lsfRequireDestTag"] == protocol.LSF_REQUIRE_DEST_TAG
    assert account["lsfDefaultRipple"] == protocol.LSF_DEFAULT_RIPPLE
    assert account["lsfAllowTrustLineLocking"] == protocol.LSF_ALLOW_TRUST_LINE_LOCKING
    assert account["lsfDisableMaster"] == protocol.LSF_DISABLE_MASTER
    assert line["lsfLowReserve"] == protocol.LSF_LOW_RESERVE
    assert line["lsfHighNoRipple"] == protocol.LSF_HIGH_NO_RIPPLE
    assert asf["asfAllowTrustLineLocking"] == protocol.ASF_ALLOW_TRUST_LINE_LOCKING
    assert asf["asfDefaultRipple"] == protocol.ASF_DEFAULT_RIPPLE
    assert asf["asfRequireDest"] == protocol.ASF_REQUIRE_DEST
    assert d["TRANSACTION_FLAGS"]["Payment"]["tfPartialPayment"] == protocol.TF_PARTIAL_PAYMENT
    assert d["TRANSACTION_FLAGS"]["TrustSet"]["tfSetNoRipple"] == protocol.TF_SET_NO_RIPPLE


def test_every_message_belongs_to_a_known_result_code() -> None:
    for token in codes._MESSAGES:
        assert codes.is_known(token), token
    assert codes.code_of("tecCRYPTOCONDITION_ERROR") == 146
    assert codes.is_tec("tecNO_PERMISSION") and not codes.is_applied("tefPAST_SEQ")


def test_amount_text_follows_rippled() -> None:
    assert amounts.text(Decimal("100")) == "100"
    assert amounts.text(Decimal("-0.5")) == "-0.5"
    assert amounts.text(Decimal("1e11")) == "1000000000000000e-4"
    assert amounts.normalize(Decimal("1.23456789012345678")) == Decimal("1.234567890123457")


@given(
    st.decimals(
        min_value=Decimal("-1e20"),
        max_value=Decimal("1e20"),
        places=6,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_amount_text_round_trips(value: Decimal) -> None:
    normal = amounts.normalize(value)
    assert amounts.parse_value(amounts.text(normal)) == normal


@given(st.binary(max_size=127))
def test_preimage_pairs_fulfil_only_their_own_condition(preimage: bytes) -> None:
    condition, fulfillment = conditions.make_preimage_pair(preimage)
    assert conditions.fulfills(fulfillment, condition)
    other_condition, _ = conditions.make_preimage_pair(preimage + b"x")
    assert not conditions.fulfills(fulfillment, other_condition)
