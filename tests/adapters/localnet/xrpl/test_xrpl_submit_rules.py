"""Transaction rules shared by every type: signatures, sequences, fees, reserves, results."""

from __future__ import annotations

from xrpl.core.binarycodec import decode, encode
from xrpl.models.requests import AccountObjects
from xrpl.models.transactions import AccountSet, AccountSetAsfFlag, Payment, TicketCreate
from xrpl.transaction import submit
from xrpl.wallet import Wallet

GENESIS = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"


def _payment(
    ledger,
    wallet: Wallet,
    *,
    sequence: int,
    amount: str = "1000",
    destination: str = GENESIS,
    fee: str = "10",
    **fields,
) -> dict:
    return {
        "TransactionType": "Payment",
        "Account": wallet.classic_address,
        "Destination": destination,
        "Amount": amount,
        "Fee": fee,
        "Sequence": sequence,
        "Flags": 0,
        **fields,
    }


def test_tampered_signature_is_refused_before_the_ledger(ledger) -> None:
    alice = ledger.fund()
    signed = ledger.sign(
        Payment(account=alice.classic_address, destination=GENESIS, amount="1000"), alice
    )
    tx_json = decode(encode(signed.to_xrpl()))
    tx_json["Amount"] = "999000000"  # changed after signing
    result = ledger.raw("submit", tx_blob=encode(tx_json))
    assert result["status"] == "error"
    assert result["error"] == "invalidTransaction"
    assert "Invalid signature" in result["error_exception"]
    assert ledger.balance(alice.classic_address) == 1_000_000_000


def test_ed25519_and_secp256k1_both_verify(ledger) -> None:
    from xrpl.constants import CryptoAlgorithm

    for algorithm in (CryptoAlgorithm.ED25519, CryptoAlgorithm.SECP256K1):
        wallet = Wallet.create(algorithm)
        ledger.node.fund(wallet.classic_address, 100)
        done = ledger.submit(
            Payment(account=wallet.classic_address, destination=GENESIS, amount="1000"), wallet
        )
        assert done.final_result == "tesSUCCESS", algorithm


def test_key_of_another_account_is_not_authorised(ledger) -> None:
    alice, mallory = ledger.fund(), ledger.fund()
    tx = _payment(ledger, alice, sequence=ledger.next_sequence(alice.classic_address))
    done = ledger.submit_json(tx, mallory)  # Account is alice, key is mallory's
    assert done.engine_result == "tefBAD_AUTH_MASTER"
    assert done.final_result is None
    assert ledger.balance(alice.classic_address) == 1_000_000_000


def test_future_sequence_is_held_and_applies_once_the_gap_fills(ledger) -> None:
    alice = ledger.fund()
    seq = ledger.next_sequence(alice.classic_address)
    later = ledger.submit_json(
        _payment(ledger, alice, sequence=seq + 1, amount="2000"), alice, close=False
    )
    assert later.engine_result == "terPRE_SEQ"
    ledger.close()
    assert ledger.balance(alice.classic_address) == 1_000_000_000  # nothing applied yet
    first = ledger.submit_json(_payment(ledger, alice, sequence=seq, amount="1000"), alice)
    assert first.final_result == "tesSUCCESS"
    ledger.close()  # the held one entered the ledger opened after the gap filled
    found = ledger.raw("tx", transaction=later.tx_hash, api_version=2)
    assert found["validated"] is True
    assert found["meta"]["TransactionResult"] == "tesSUCCESS"
    assert ledger.balance(alice.classic_address) == 1_000_000_000 - 3_000 - 20
    assert ledger.next_sequence(alice.classic_address) == seq + 2


def test_held_transaction_is_dropped_once_its_last_ledger_passes(ledger) -> None:
    alice = ledger.fund()
    seq = ledger.next_sequence(alice.classic_address)
    current = ledger.raw("ledger_current")["ledger_current_index"]
    held = _payment(ledger, alice, sequence=seq + 1, LastLedgerSequence=current + 1)
    assert ledger.submit_json(held, alice, close=False).engine_result == "terPRE_SEQ"
    ledger.close()
    assert ledger.node.chain.held_count() == 1
    ledger.close()  # now past its LastLedgerSequence: no longer held
    assert ledger.node.chain.held_count() == 0
    assert ledger.submit_json(_payment(ledger, alice, sequence=seq), alice).final_result == (
        "tesSUCCESS"
    )
    ledger.close()
    assert ledger.next_sequence(alice.classic_address) == seq + 1  # the held one never ran


def test_applied_blob_is_never_applied_twice(ledger) -> None:
    alice = ledger.fund()
    signed = ledger.sign(
        Payment(account=alice.classic_address, destination=GENESIS, amount="5000"), alice
    )
    assert ledger.submit_signed(signed).final_result == "tesSUCCESS"
    again = submit(signed, ledger.client).result
    assert again["engine_result"] == "tefPAST_SEQ"
    assert again["applied"] is False
    ledger.close()
    assert ledger.balance(alice.classic_address) == 1_000_000_000 - 5_010


def test_resubmitting_while_in_the_open_ledger_is_refused(ledger) -> None:
    alice = ledger.fund()
    signed = ledger.sign(
        Payment(account=alice.classic_address, destination=GENESIS, amount="5000"), alice
    )
    assert ledger.submit_signed(signed, close=False).engine_result == "tesSUCCESS"
    again = submit(signed, ledger.client).result
    assert again["engine_result"] in ("tefPAST_SEQ", "tefALREADY")
    ledger.close()
    assert ledger.balance(alice.classic_address) == 1_000_000_000 - 5_010


def test_last_ledger_sequence_in_the_past_is_tef_max_ledger(ledger) -> None:
    alice = ledger.fund()
    validated = ledger.request(AccountObjects(account=GENESIS))["ledger_current_index"] - 1
    tx = _payment(
        ledger,
        alice,
        sequence=ledger.next_sequence(alice.classic_address),
        LastLedgerSequence=validated,
    )
    done = ledger.submit_json(tx, alice)
    assert done.engine_result == "tefMAX_LEDGER"
    assert ledger.balance(alice.classic_address) == 1_000_000_000


def test_fee_below_the_base_fee_is_tel_insuf_fee_p(ledger) -> None:
    alice = ledger.fund()
    tx = _payment(ledger, alice, sequence=ledger.next_sequence(alice.classic_address), fee="9")
    assert ledger.submit_json(tx, alice).engine_result == "telINSUF_FEE_P"
    assert ledger.balance(alice.classic_address) == 1_000_000_000


def test_tec_claims_the_fee_and_consumes_the_sequence(ledger) -> None:
    alice = ledger.fund(xrp=10)
    seq = ledger.next_sequence(alice.classic_address)
    done = ledger.submit(
        Payment(account=alice.classic_address, destination=GENESIS, amount="9500000"), alice
    )  # would leave less than the reserve
    assert done.engine_result == "tecUNFUNDED_PAYMENT"
    assert done.final_result == "tecUNFUNDED_PAYMENT"
    assert ledger.balance(alice.classic_address) == 10_000_000 - 10
    assert ledger.next_sequence(alice.classic_address) == seq + 1


def test_tem_claims_nothing(ledger) -> None:
    alice = ledger.fund()
    seq = ledger.next_sequence(alice.classic_address)
    tx = _payment(ledger, alice, sequence=seq, destination=alice.classic_address)
    assert ledger.submit_json(tx, alice).engine_result == "temREDUNDANT"
    assert ledger.next_sequence(alice.classic_address) == seq
    assert ledger.balance(alice.classic_address) == 1_000_000_000


def test_new_account_needs_the_base_reserve(ledger) -> None:
    alice = ledger.fund()
    newcomer = Wallet.create().classic_address
    small = ledger.submit(
        Payment(account=alice.classic_address, destination=newcomer, amount="999999"), alice
    )
    assert small.final_result == "tecNO_DST_INSUF_XRP"
    enough = ledger.submit(
        Payment(account=alice.classic_address, destination=newcomer, amount="1000000"), alice
    )
    assert enough.final_result == "tesSUCCESS"
    created = ledger.account(newcomer)
    assert created["Balance"] == "1000000"
    # Since DeletableAccounts a new account starts at the sequence of its ledger.
    assert created["Sequence"] == ledger.raw("tx", transaction=enough.tx_hash)["ledger_index"]


def test_require_dest_needs_a_destination_tag(ledger) -> None:
    alice, shop = ledger.fund(), ledger.fund()
    assert (
        ledger.submit(
            AccountSet(account=shop.classic_address, set_flag=AccountSetAsfFlag.ASF_REQUIRE_DEST),
            shop,
        ).final_result
        == "tesSUCCESS"
    )
    untagged = ledger.submit(
        Payment(account=alice.classic_address, destination=shop.classic_address, amount="1000"),
        alice,
    )
    assert untagged.final_result == "tecDST_TAG_NEEDED"
    tagged = ledger.submit(
        Payment(
            account=alice.classic_address,
            destination=shop.classic_address,
            amount="1000",
            destination_tag=7,
        ),
        alice,
    )
    assert tagged.final_result == "tesSUCCESS"


def test_unenforced_account_flags_are_refused_not_faked(ledger) -> None:
    alice = ledger.fund()
    done = ledger.submit(
        AccountSet(account=alice.classic_address, set_flag=AccountSetAsfFlag.ASF_DISABLE_MASTER),
        alice,
    )
    assert done.engine_result == "temDISABLED"


def test_tickets_let_transactions_use_reserved_sequences(ledger) -> None:
    alice = ledger.fund()
    seq = ledger.next_sequence(alice.classic_address)
    done = ledger.submit(TicketCreate(account=alice.classic_address, ticket_count=2), alice)
    assert done.final_result == "tesSUCCESS"
    tickets = ledger.objects(alice.classic_address, "ticket")
    assert sorted(t["TicketSequence"] for t in tickets) == [seq + 1, seq + 2]
    root = ledger.account(alice.classic_address)
    assert root["OwnerCount"] == 2
    assert root["TicketCount"] == 2
    assert root["Sequence"] == seq + 3

    with_ticket = _payment(ledger, alice, sequence=0, TicketSequence=seq + 2)
    assert ledger.submit_json(with_ticket, alice).final_result == "tesSUCCESS"
    reuse = _payment(ledger, alice, sequence=0, TicketSequence=seq + 2, amount="1001")
    assert ledger.submit_json(reuse, alice).engine_result == "tefNO_TICKET"
    future = _payment(ledger, alice, sequence=0, TicketSequence=seq + 50)
    assert ledger.submit_json(future, alice, close=False).engine_result == "terPRE_TICKET"
    both = _payment(ledger, alice, sequence=seq + 3, TicketSequence=seq + 1)
    assert ledger.submit_json(both, alice).engine_result == "temSEQ_AND_TICKET"
    root = ledger.account(alice.classic_address)
    assert root["OwnerCount"] == 1
    assert root["Sequence"] == seq + 3  # using a ticket leaves Sequence alone


def test_a_signature_that_is_not_fully_canonical_is_refused(ledger) -> None:
    """rippled (RequireFullyCanonicalSig) refuses the high-S twin of a valid secp256k1
    signature, which is the same ECDSA point and which xrpl-py would accept."""
    from cryptography.hazmat.primitives.asymmetric import utils
    from xrpl.constants import CryptoAlgorithm
    from xrpl.core.binarycodec import encode_for_signing
    from xrpl.core.keypairs import sign as sign_message

    from adapters.xrpl_signatures import SECP256K1_ORDER

    wallet = Wallet.create(CryptoAlgorithm.SECP256K1)
    ledger.node.fund(wallet.classic_address, 100)
    tx = _payment(ledger, wallet, sequence=ledger.next_sequence(wallet.classic_address))
    tx["SigningPubKey"] = wallet.public_key
    low = bytes.fromhex(sign_message(bytes.fromhex(encode_for_signing(tx)), wallet.private_key))
    r, s = utils.decode_dss_signature(low)
    tx["TxnSignature"] = utils.encode_dss_signature(r, SECP256K1_ORDER - s).hex().upper()
    result = ledger.raw("submit", tx_blob=encode(tx))
    assert result["error"] == "invalidTransaction"
    assert "Invalid signature" in result["error_exception"]
    tx["TxnSignature"] = low.hex().upper()  # the canonical twin is accepted
    assert ledger.raw("submit", tx_blob=encode(tx))["engine_result"] == "tesSUCCESS"
