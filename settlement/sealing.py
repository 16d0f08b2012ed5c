"""Secrets at rest: the hash-lock preimages are sealed (Fernet: AES-128-CBC + HMAC-SHA256).

On the local network the key is generated once into ``<data_dir>/keys/sealing.key``
(mode 0600) so `make demo` needs no set-up. A key setting for other networks (and an
HSM or KMS behind the same ``Sealer`` shape) comes with the worker command.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


class SealingError(Exception):
    """A sealed secret could not be opened (wrong key, or the ciphertext was altered)."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, secret: bytes) -> bytes:
        return self._fernet.encrypt(secret)

    def open(self, sealed: bytes) -> bytes:
        try:
            return self._fernet.decrypt(sealed)
        except InvalidToken as exc:
            raise SealingError("sealed secret cannot be opened with this key") from exc


def local_key(data_dir: Path, *, name: str = "sealing") -> bytes:
    """A local network's Fernet key (``<name>.key``), created on first use."""
    path = data_dir / "keys" / f"{name}.key"
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key
