"""The Signer port: the engine signs for the ledger accounts whose keys it holds.

Adapters never see a private key. They build a transaction, compute its hash locally
and ask the signer for a signature over that hash, which is the shape an HSM, a KMS or
a custodian API offers (none of them hands a key out). The adapter verifies the
signature against the account's public key before using it, so a misconfigured
keystore fails at signing time, not as a ledger rejection.

``InMemoryKeystore`` is the implementation for tests and the local networks; the
encrypted keystore (key from settings) comes later behind the same port.

XRPL signs its signing data (the ``STX\\0`` prefix and the canonical fields, the
account's public key among them) rather than a hash: ed25519 keys sign those bytes,
secp256k1 keys their SHA-512Half. So the XRPL methods take the message, and the adapter
first asks for the public key it must write into the transaction.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from stellar_sdk import Keypair
from xrpl.wallet import Wallet

from adapters import xrpl_signatures
from adapters.errors import SigningUnavailable


@runtime_checkable
class StellarSigner(Protocol):
    """Signs for Stellar accounts; raises ``SigningUnavailable`` for any other account."""

    def sign_stellar(self, account_id: str, tx_hash: bytes) -> bytes:
        """The 64-byte ed25519 signature of ``tx_hash`` (a Stellar transaction hash,
        32 bytes) by the master key of ``account_id`` (a G... address)."""
        ...


@runtime_checkable
class XrplSigner(Protocol):
    """Signs for XRPL accounts; raises ``SigningUnavailable`` for any other account."""

    def xrpl_public_key(self, address: str) -> str:
        """The master public key (hex, as ``SigningPubKey``) of ``address`` (r...)."""
        ...

    def sign_xrpl(self, address: str, message: bytes) -> bytes:
        """The signature (DER for secp256k1, 64 bytes for ed25519) of an XRPL
        transaction's signing data ``message`` by the master key of ``address``."""
        ...


@runtime_checkable
class Signer(StellarSigner, XrplSigner, Protocol):
    """The engine's keystore: signs for the accounts of every chain it holds keys for.
    Each adapter asks only for its own chain's part."""


class InMemoryKeystore:
    """Keys held in process memory: for tests and the local networks only."""

    def __init__(
        self, stellar: list[Keypair] | None = None, xrpl: list[Wallet] | None = None
    ) -> None:
        self._stellar: dict[str, Keypair] = {}
        self._xrpl: dict[str, Wallet] = {}
        for keypair in stellar or []:
            self.add_stellar(keypair)
        for wallet in xrpl or []:
            self.add_xrpl(wallet)

    def add_stellar(self, keypair: Keypair) -> None:
        if not keypair.can_sign():
            raise ValueError(f"{keypair.public_key}: a keypair without its secret cannot sign")
        self._stellar[keypair.public_key] = keypair

    def holds_stellar(self, account_id: str) -> bool:
        return account_id in self._stellar

    def sign_stellar(self, account_id: str, tx_hash: bytes) -> bytes:
        keypair = self._stellar.get(account_id)
        if keypair is None:
            raise SigningUnavailable(f"no Stellar key held for {account_id}")
        signature: bytes = keypair.sign(tx_hash)
        return signature

    def add_xrpl(self, wallet: Wallet) -> None:
        self._xrpl[wallet.classic_address] = wallet

    def holds_xrpl(self, address: str) -> bool:
        return address in self._xrpl

    def xrpl_public_key(self, address: str) -> str:
        return self._xrpl_wallet(address).public_key

    def sign_xrpl(self, address: str, message: bytes) -> bytes:
        return xrpl_signatures.sign(message, self._xrpl_wallet(address).private_key)

    def _xrpl_wallet(self, address: str) -> Wallet:
        wallet = self._xrpl.get(address)
        if wallet is None:
            raise SigningUnavailable(f"no XRPL key held for {address}")
        return wallet
