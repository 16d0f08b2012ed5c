"""A decoded transaction envelope: the fields validation and application read.

Hashing follows stellar-core: SHA-256 over (network id, ENVELOPE_TYPE_TX, Transaction).
A legacy v0 envelope is hashed as the equivalent v1 transaction, so both forms of one
transaction share a hash, exactly as stellar-sdk's `hash_hex()` computes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from stellar_sdk import xdr as x

from adapters.localnet.stellar.xdrutil import muxed_to_account_id


@dataclass(frozen=True)
class FeeBump:
    """The outer part of a FeeBumpTransactionEnvelope: who pays, how much, and the
    signatures over the outer hash (stellar-core FeeBumpTransactionFrame)."""

    fee_source: str
    fee: int  # the outer fee bid, int64: it pays for the inner operations plus one
    hash: bytes  # SHA-256 over (network id, ENVELOPE_TYPE_TX_FEE_BUMP, FeeBumpTransaction)
    signatures: tuple[x.DecoratedSignature, ...]

    @property
    def hash_hex(self) -> str:
        return self.hash.hex()


@dataclass(frozen=True)
class TimeBounds:
    min_time: int
    max_time: int  # 0 = no upper bound


@dataclass(frozen=True)
class LedgerBounds:
    min_ledger: int
    max_ledger: int  # 0 = no upper bound


@dataclass(frozen=True)
class TxFrame:
    envelope_b64: str
    envelope: x.TransactionEnvelope
    tx: x.Transaction  # v0 envelopes are converted to the v1 form
    hash: bytes  # the contents hash every (inner) signature signs
    signatures: tuple[x.DecoratedSignature, ...]
    fee_bump: FeeBump | None = None  # set when the envelope is a fee bump of this tx

    @property
    def hash_hex(self) -> str:
        return self.hash.hex()

    @property
    def id_hex(self) -> str:
        """The hash the network knows this submission by: a fee bump's outer hash."""
        return self.fee_bump.hash_hex if self.fee_bump is not None else self.hash_hex

    @property
    def fee_source(self) -> str:
        return self.fee_bump.fee_source if self.fee_bump is not None else self.source

    @property
    def op_count(self) -> int:
        """Operations the fee pays for: a fee bump counts as one more (core getNumOperations)."""
        return len(self.operations) + (1 if self.fee_bump is not None else 0)

    @property
    def full_fee_stroops(self) -> int:
        """The fee bid the fee source offers (the outer fee for a fee bump)."""
        return self.fee_bump.fee if self.fee_bump is not None else self.fee

    @property
    def source(self) -> str:
        return muxed_to_account_id(self.tx.source_account)

    @property
    def seq_num(self) -> int:
        return self.tx.seq_num.sequence_number.int64

    @property
    def fee(self) -> int:
        return self.tx.fee.uint32

    @property
    def operations(self) -> list[x.Operation]:
        return self.tx.operations

    def op_source(self, op: x.Operation) -> str:
        return self.source if op.source_account is None else muxed_to_account_id(op.source_account)

    @property
    def time_bounds(self) -> TimeBounds | None:
        cond = self.tx.cond
        bounds = cond.time_bounds if cond.v2 is None else cond.v2.time_bounds
        if bounds is None:
            return None
        return TimeBounds(bounds.min_time.time_point.uint64, bounds.max_time.time_point.uint64)

    @property
    def ledger_bounds(self) -> LedgerBounds | None:
        v2 = self.tx.cond.v2
        if v2 is None or v2.ledger_bounds is None:
            return None
        return LedgerBounds(v2.ledger_bounds.min_ledger.uint32, v2.ledger_bounds.max_ledger.uint32)

    @property
    def min_seq_num(self) -> int | None:
        v2 = self.tx.cond.v2
        if v2 is None or v2.min_seq_num is None:
            return None
        return v2.min_seq_num.sequence_number.int64

    @property
    def min_seq_age(self) -> int:
        v2 = self.tx.cond.v2
        return 0 if v2 is None else v2.min_seq_age.duration.uint64

    @property
    def min_seq_ledger_gap(self) -> int:
        v2 = self.tx.cond.v2
        return 0 if v2 is None else v2.min_seq_ledger_gap.uint32

    @property
    def extra_signers(self) -> list[x.SignerKey]:
        v2 = self.tx.cond.v2
        return [] if v2 is None else v2.extra_signers


def _v0_as_v1(tx0: x.TransactionV0) -> x.Transaction:
    cond = (
        x.Preconditions(x.PreconditionType.PRECOND_NONE)
        if tx0.time_bounds is None
        else x.Preconditions(x.PreconditionType.PRECOND_TIME, time_bounds=tx0.time_bounds)
    )
    return x.Transaction(
        source_account=x.MuxedAccount(
            x.CryptoKeyType.KEY_TYPE_ED25519, ed25519=tx0.source_account_ed25519
        ),
        fee=tx0.fee,
        seq_num=tx0.seq_num,
        cond=cond,
        memo=tx0.memo,
        operations=tx0.operations,
        ext=x.TransactionExt(0),
    )


def transaction_hash(network_id: bytes, tx: x.Transaction) -> bytes:
    payload = x.TransactionSignaturePayload(
        network_id=x.Hash(network_id),
        tagged_transaction=x.TransactionSignaturePayloadTaggedTransaction(
            x.EnvelopeType.ENVELOPE_TYPE_TX, tx=tx
        ),
    )
    return hashlib.sha256(payload.to_xdr_bytes()).digest()


def fee_bump_hash(network_id: bytes, fee_bump_tx: x.FeeBumpTransaction) -> bytes:
    payload = x.TransactionSignaturePayload(
        network_id=x.Hash(network_id),
        tagged_transaction=x.TransactionSignaturePayloadTaggedTransaction(
            x.EnvelopeType.ENVELOPE_TYPE_TX_FEE_BUMP, fee_bump=fee_bump_tx
        ),
    )
    return hashlib.sha256(payload.to_xdr_bytes()).digest()


def parse_envelope(envelope_b64: str, network_id: bytes) -> TxFrame:
    """Decode a base64 TransactionEnvelope. Raises ValueError when it is not valid XDR
    (Horizon's transaction_malformed)."""
    try:
        envelope = x.TransactionEnvelope.from_xdr(envelope_b64.strip())
    except Exception as exc:  # the XDR decoder raises several unrelated types
        raise ValueError(f"cannot decode envelope: {exc}") from exc
    if envelope.type == x.EnvelopeType.ENVELOPE_TYPE_TX_FEE_BUMP:
        return _fee_bump_frame(envelope, network_id)
    if envelope.type == x.EnvelopeType.ENVELOPE_TYPE_TX:
        assert envelope.v1 is not None
        tx, signatures = envelope.v1.tx, envelope.v1.signatures
    else:  # the decoder refuses every type but these three (ValueError above)
        assert envelope.v0 is not None
        tx, signatures = _v0_as_v1(envelope.v0.tx), envelope.v0.signatures
    return TxFrame(
        envelope_b64=envelope.to_xdr(),
        envelope=envelope,
        tx=tx,
        hash=transaction_hash(network_id, tx),
        signatures=tuple(signatures),
    )


def _fee_bump_frame(envelope: x.TransactionEnvelope, network_id: bytes) -> TxFrame:
    """A fee bump is its inner transaction plus who pays: the inner frame carries the
    outer part, and the outer envelope is what the ledger records."""
    assert envelope.fee_bump is not None
    outer = envelope.fee_bump.tx
    inner = outer.inner_tx.v1  # the XDR union allows only a v1 inner transaction
    assert inner is not None
    bump = FeeBump(
        fee_source=muxed_to_account_id(outer.fee_source),
        fee=outer.fee.int64,
        hash=fee_bump_hash(network_id, outer),
        signatures=tuple(envelope.fee_bump.signatures),
    )
    return TxFrame(
        envelope_b64=envelope.to_xdr(),
        envelope=envelope,
        tx=inner.tx,
        hash=transaction_hash(network_id, inner.tx),
        signatures=tuple(inner.signatures),
        fee_bump=bump,
    )
