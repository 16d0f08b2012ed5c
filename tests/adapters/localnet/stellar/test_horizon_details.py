"""The Horizon shapes of the issuer-control and path payment operations and their
effects (stellar/go protocols/horizon/operations and the ingestion processors'
operation details and effects), checked on operations stellar-sdk builds."""

from __future__ import annotations

from stellar_sdk import (
    Asset,
    ClawbackClaimableBalance,
    Keypair,
    MuxedAccount,
    PathPaymentStrictReceive,
    PathPaymentStrictSend,
    SetTrustLineFlags,
    TrustLineFlags,
)
from stellar_sdk import xdr as x
from stellar_sdk.operation import Clawback

from adapters.localnet.stellar.operations.horizon_details import (
    operation_details,
    operation_effects,
)

ISSUER = Keypair.random().public_key
HOLDER = Keypair.random().public_key
USD = Asset("USD", ISSUER)
BALANCE_ID = "00000000" + "cd" * 32


def _body(op: object) -> x.OperationBody:
    body = op.to_xdr_object().body  # type: ignore[attr-defined]
    assert isinstance(body, x.OperationBody)
    return body


def test_set_trust_line_flags_details_and_effect() -> None:
    op = SetTrustLineFlags(
        HOLDER,
        USD,
        clear_flags=TrustLineFlags.AUTHORIZED_FLAG,
        set_flags=TrustLineFlags.AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG,
    )
    assert operation_details(_body(op), ISSUER, True) == {
        "asset_type": "credit_alphanum4",
        "asset_code": "USD",
        "asset_issuer": ISSUER,
        "trustor": HOLDER,
        "set_flags": [2],
        "set_flags_s": ["authorized_to_maintain_liabilites"],
        "clear_flags": [1],
        "clear_flags_s": ["authorized"],
    }
    (effect,) = operation_effects(_body(op), ISSUER, True)
    assert (effect.account, effect.type, effect.type_i) == (
        ISSUER,
        "trustline_flags_updated",
        26,
    )
    assert effect.details["authorized_flag"] is False
    assert effect.details["authorized_to_maintain_liabilites"] is True
    assert operation_effects(_body(op), ISSUER, False) == []


def test_path_payment_details_show_both_sides() -> None:
    receive = PathPaymentStrictReceive(HOLDER, USD, "12", USD, "10", [USD])
    details = operation_details(_body(receive), ISSUER, True)
    assert details is not None
    assert (details["amount"], details["source_amount"], details["source_max"]) == (
        "10.0000000",
        "10.0000000",
        "12.0000000",
    )
    assert details["path"] == [
        {"asset_type": "credit_alphanum4", "asset_code": "USD", "asset_issuer": ISSUER}
    ]
    failed = operation_details(_body(receive), ISSUER, False)
    assert failed is not None and failed["source_amount"] == "0.0000000"

    muxed_to = MuxedAccount(HOLDER, 9).account_muxed
    assert muxed_to is not None
    send = PathPaymentStrictSend(muxed_to, Asset.native(), "5", Asset.native(), "4", [])
    details = operation_details(_body(send), ISSUER, True)
    assert details is not None
    assert details["to"] == HOLDER and details["to_muxed_id"] == "9"
    assert details["source_asset_type"] == "native"
    assert (details["amount"], details["destination_min"]) == ("5.0000000", "4.0000000")
    kinds = [(e.account, e.type) for e in operation_effects(_body(send), ISSUER, True)]
    assert kinds == [(HOLDER, "account_credited"), (ISSUER, "account_debited")]


def test_clawback_details_and_effects() -> None:
    op = Clawback(USD, HOLDER, "3")
    assert operation_details(_body(op), ISSUER, True) == {
        "asset_type": "credit_alphanum4",
        "asset_code": "USD",
        "asset_issuer": ISSUER,
        "from": HOLDER,
        "amount": "3.0000000",
    }
    effects = operation_effects(_body(op), ISSUER, True)
    assert [(e.account, e.type) for e in effects] == [
        (ISSUER, "account_credited"),
        (HOLDER, "account_debited"),
    ]
    ccb = ClawbackClaimableBalance(BALANCE_ID)
    assert operation_details(_body(ccb), ISSUER, True) == {"balance_id": BALANCE_ID}
    (effect,) = operation_effects(_body(ccb), ISSUER, True)
    assert (effect.type, effect.type_i, effect.details) == (
        "claimable_balance_clawed_back",
        80,
        {"balance_id": BALANCE_ID},
    )


def test_allow_trust_details_and_effects() -> None:
    body = x.OperationBody(
        x.OperationType.ALLOW_TRUST,
        allow_trust_op=x.AllowTrustOp(
            Keypair.from_public_key(HOLDER).xdr_account_id(),
            x.AssetCode(x.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4, x.AssetCode4(b"USD\x00")),
            x.Uint32(0),
        ),
    )
    details = operation_details(body, ISSUER, True)
    assert details is not None
    assert (details["trustee"], details["asset_issuer"], details["authorize"]) == (
        ISSUER,
        ISSUER,
        False,
    )
    effects = operation_effects(body, ISSUER, True)
    assert [e.type for e in effects] == ["trustline_deauthorized", "trustline_flags_updated"]
    assert effects[1].details["authorized_flag"] is False
    assert effects[1].details["authorized_to_maintain_liabilites"] is False


def test_other_operation_types_are_left_to_the_caller() -> None:
    body = x.OperationBody(x.OperationType.INFLATION)
    assert operation_details(body, ISSUER, True) is None
    assert operation_effects(body, ISSUER, True) == []
