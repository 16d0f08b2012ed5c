"""The encrypted keystore file: the keys of the ledger accounts the engine signs for.

One file holds XRPL seeds and Stellar secrets as JSON, encrypted as a whole with Fernet
(AES-128-CBC + HMAC-SHA256) under a key the operator provides; the file is written
atomically with mode 0600. Loading it yields an ``InMemoryKeystore`` behind the Signer
port, so an HSM, KMS or custodian can later replace it without touching the adapters.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from stellar_sdk import Keypair
from xrpl.wallet import Wallet

from adapters.errors import AdapterError
from adapters.signing import InMemoryKeystore


class KeystoreError(AdapterError):
    """The keystore cannot be read (wrong key, altered file) or a secret is malformed."""


class KeystoreFile:
    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        try:
            self._fernet = Fernet(key)
        except ValueError as exc:
            raise KeystoreError("the keystore key is not a Fernet key") from exc

    def _read(self) -> dict[str, list[str]]:
        if not self.path.exists():
            return {"xrpl": [], "stellar": []}
        try:
            plain = self._fernet.decrypt(self.path.read_bytes())
        except InvalidToken as exc:
            raise KeystoreError(f"{self.path} cannot be opened with this key") from exc
        data = json.loads(plain)
        return {"xrpl": list(data.get("xrpl", [])), "stellar": list(data.get("stellar", []))}

    def _write(self, data: dict[str, list[str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        token = self._fernet.encrypt(json.dumps(data, sort_keys=True).encode())
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keystore-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(token)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def add_xrpl(self, seed: str) -> str:
        """Add an XRPL account by its seed; return its classic address."""
        try:
            wallet = Wallet.from_seed(seed.strip())
        except Exception as exc:  # xrpl-py raises several types for a bad seed
            raise KeystoreError("not an XRPL seed") from exc
        data = self._read()
        if seed.strip() not in data["xrpl"]:
            data["xrpl"].append(seed.strip())
            self._write(data)
        return wallet.classic_address

    def add_stellar(self, secret: str) -> str:
        """Add a Stellar account by its secret seed (S...); return its account id."""
        try:
            keypair = Keypair.from_secret(secret.strip())
        except Exception as exc:  # stellar-sdk raises several types for a bad secret
            raise KeystoreError("not a Stellar secret seed") from exc
        data = self._read()
        if secret.strip() not in data["stellar"]:
            data["stellar"].append(secret.strip())
            self._write(data)
        return keypair.public_key

    def accounts(self) -> dict[str, list[str]]:
        """The addresses the keystore signs for, per chain (never the secrets)."""
        data = self._read()
        return {
            "xrpl": [Wallet.from_seed(s).classic_address for s in data["xrpl"]],
            "stellar": [Keypair.from_secret(s).public_key for s in data["stellar"]],
        }

    def load(self) -> InMemoryKeystore:
        data = self._read()
        return InMemoryKeystore(
            stellar=[Keypair.from_secret(s) for s in data["stellar"]],
            xrpl=[Wallet.from_seed(s) for s in data["xrpl"]],
        )
