"""Signature checking with weights, as stellar-core's SignatureChecker does it.

Signers are tried in a fixed order: pre-authorised transaction hashes (no signature
needed, the signer key *is* the transaction hash), then hash(x) signers (the
"signature" is x, with sha256(x) equal to the key), then ed25519 keys. Each signature
may count once per check, and at the end every signature on the envelope must have
been used by some check, or the transaction is refused (tx_bad_auth_extra).
"""

from __future__ import annotations

import hashlib

from stellar_sdk import Keypair
from stellar_sdk import xdr as x
from stellar_sdk.exceptions import BadSignatureError

from adapters.localnet.stellar.state import Account, Signer
from adapters.localnet.stellar.xdrutil import signer_key_raw


def account_signers(account: Account) -> list[Signer]:
    """The master key (if its weight is non-zero) followed by the added signers."""
    master = [Signer(account.account_id, account.master_weight)] if account.master_weight else []
    return master + list(account.signers)


class SignatureChecker:
    def __init__(self, contents_hash: bytes, signatures: tuple[x.DecoratedSignature, ...]) -> None:
        self._hash = contents_hash
        self._signatures = signatures
        self._used = [False] * len(signatures)

    def check(self, signers: list[Signer], needed_weight: int) -> bool:
        """True once matching signers reach `needed_weight`. Even a zero threshold needs at
        least one matching signer, because weight is only ever added on a match."""
        total = 0
        for signer in signers:
            if signer.key.startswith("T") and signer_key_raw(signer.key) == self._hash:
                total += min(signer.weight, 255)
                if total >= needed_weight:
                    return True
        for prefix, verify in (("X", self._verify_hash_x), ("G", self._verify_ed25519)):
            candidates = [s for s in signers if s.key.startswith(prefix)]
            for index, signature in enumerate(self._signatures):
                for signer in candidates:
                    if verify(signature, signer.key):
                        self._used[index] = True
                        total += min(signer.weight, 255)
                        if total >= needed_weight:
                            return True
                        candidates.remove(signer)
                        break
        return False

    def all_used(self) -> bool:
        return all(self._used)

    def _verify_ed25519(self, signature: x.DecoratedSignature, key: str) -> bool:
        raw = signer_key_raw(key)
        if signature.hint.signature_hint != raw[-4:]:
            return False
        try:
            Keypair.from_raw_ed25519_public_key(raw).verify(
                self._hash, signature.signature.signature
            )
        except BadSignatureError:
            return False
        return True

    @staticmethod
    def _verify_hash_x(signature: x.DecoratedSignature, key: str) -> bool:
        raw = signer_key_raw(key)
        if signature.hint.signature_hint != raw[-4:]:
            return False
        return hashlib.sha256(signature.signature.signature).digest() == raw
