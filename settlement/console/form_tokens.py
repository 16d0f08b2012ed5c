"""The sign-in form's token: one this console issued, recently.

The sign-in form has no session to tie a token to, so it used to carry a random token
that had only to equal a cookie set with the form. A cookie and a field that merely
match can be planted together (a sibling host tossing a cookie, a network attacker on
plain HTTP) and, with no Origin header sent, were accepted. A token is now
``<issued, unix s>.<nonce>.<mac>``, the MAC an HMAC-SHA256 under a secret of the
console over the other two: a pair is accepted only if this console (or one sharing
its secret, as the workers of ``settle serve --workers N`` do) issued it within
``ttl``. The cookie must still equal the field, so a token read elsewhere is of no use
without the cookie too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta

from settlement.clock import Clock

#: what a token's MAC is over, besides the token's own parts: a MAC of this secret made
#: for another purpose is not a sign-in token
_PURPOSE = b"console sign-in form\x00"


class SignInTokens:
    def __init__(self, secret: bytes, clock: Clock, *, ttl: timedelta) -> None:
        if len(secret) < 32:
            raise ValueError("the sign-in secret must have at least 32 bytes")
        self._secret = secret
        self._clock = clock
        self._ttl = ttl

    def issue(self) -> str:
        issued = str(int(self._clock.now().timestamp()))
        nonce = secrets.token_urlsafe(18)
        return f"{issued}.{nonce}.{self._mac(issued, nonce)}"

    def accepts(self, token: str) -> bool:
        """Whether ``token`` is one this console issued no more than ``ttl`` ago (and
        not in the future). Constant-time in the MAC."""
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or len(token) > 200:
            return False
        issued, nonce, mac = parts
        if not hmac.compare_digest(mac.encode(), self._mac(issued, nonce).encode()):
            return False
        age_s = self._clock.now().timestamp() - int(issued)
        return 0 <= age_s <= self._ttl.total_seconds()

    def _mac(self, issued: str, nonce: str) -> str:
        message = _PURPOSE + f"{issued}.{nonce}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
