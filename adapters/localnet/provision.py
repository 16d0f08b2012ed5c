"""Provisioning a network: funded accounts, issuers, trust lines, balances.

Everything goes over the wire with the ordinary client libraries (xrpl-py, stellar-sdk),
as an operator would do it against a testnet; the demo, the DVP tests and the testnet
tests use it. Every set-up transaction must succeed and be validated before the next one
is sent.

Accounts come from a faucet. On the local networks it is the node's own (the XRPL node's
``POST /accounts``, Horizon's ``/friendbot``); on the public testnets it is a host of its
own (``https://faucet.altnet.rippletest.net/accounts``, ``https://friendbot.stellar.org``),
named by ``faucet_url`` / ``friendbot_url``. A public faucet answers once it has
submitted the payment, and the server we read may be another one behind a balancer, so
an account is handed out only once our own endpoint shows it in a validated ledger.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
from stellar_sdk import Asset as SdkAsset
from stellar_sdk import Keypair, Network, Server, TransactionBuilder
from stellar_sdk.client.requests_client import RequestsClient
from stellar_sdk.exceptions import NotFoundError
from xrpl.core.binarycodec import encode
from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.transactions import AccountSet, AccountSetAsfFlag, Payment, Transaction, TrustSet
from xrpl.transaction import sign
from xrpl.wallet import Wallet

from adapters.chain import Asset

#: the local networks close in milliseconds; a public one every 3-5 s, and its servers
#: limit how often one client may ask, so the testnets want ``poll_s`` near a second
_POLL_S = 0.02
_TIMEOUT_S = 20.0
#: a public faucet fails now and then under load (HTTP 429 or 5xx, a dropped
#: connection); asking again funds the account, at worst twice, which costs nothing
_FAUCET_ATTEMPTS = 3


class ProvisioningError(RuntimeError):
    """A set-up transaction failed; the message carries the ledger's answer."""


class XrplProvisioner:
    """Accounts and issued tokens on a rippled JSON-RPC endpoint, funded by a faucet.

    ``faucet_url`` is the faucet's full address (the testnet's
    ``https://faucet.altnet.rippletest.net/accounts``); by default the local node's own,
    ``{url}/accounts``. ``poll_s`` and ``timeout_s`` bound every wait for a validated
    ledger (an account's funding, a set-up transaction)."""

    def __init__(
        self,
        url: str,
        *,
        faucet_url: str | None = None,
        poll_s: float = _POLL_S,
        timeout_s: float = _TIMEOUT_S,
    ) -> None:
        self.url = url
        self.faucet_url = faucet_url or f"{url.rstrip('/')}/accounts"
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        # the local node's faucet reads xrpAmount as a JSON integer; a real faucet as a
        # string of digits (it rejects anything else), so the shape follows the host
        self._faucet_is_local = faucet_url is None
        self._http = httpx.Client(base_url=url, timeout=10.0)

    def close(self) -> None:
        self._http.close()

    def rpc(self, method: str, **params: Any) -> dict[str, Any]:
        answer = self._http.post("/", json={"method": method, "params": [params]})
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()["result"]
        return result

    def account(self, xrp: int | None = None) -> Wallet:
        """A new account funded by the faucet with ``xrp`` (None: the faucet's own
        amount), returned once it is in a validated ledger on ``url``. Raises
        ``ProvisioningError`` when the faucet refuses, funds another account, or the
        account is not validated within ``timeout_s``."""
        wallet = Wallet.create()
        body: dict[str, Any] = {"destination": wallet.classic_address}
        if xrp is not None:
            body["xrpAmount"] = xrp if self._faucet_is_local else str(xrp)
        answer = _ask_faucet(
            self.faucet_url,
            lambda: self._http.post(self.faucet_url, json=body, timeout=self.timeout_s),
            self.poll_s,
        )
        funded = _faucet_address(answer)
        if funded != wallet.classic_address:
            raise ProvisioningError(
                f"faucet {self.faucet_url} funded {funded!r}, not {wallet.classic_address}"
            )
        self._wait_for_account(wallet.classic_address)
        return wallet

    def issuer(self, *, allow_trust_line_locking: bool = True) -> Wallet:
        """A token issuer that lets holders pay each other (and escrow, if asked)."""
        wallet = self.account()
        flags = [AccountSetAsfFlag.ASF_DEFAULT_RIPPLE]
        if allow_trust_line_locking:
            flags.append(AccountSetAsfFlag.ASF_ALLOW_TRUSTLINE_LOCKING)
        for flag in flags:
            self.send(AccountSet(account=wallet.classic_address, set_flag=flag), wallet)
        return wallet

    def trust(self, holder: Wallet, asset: Asset, limit: Decimal) -> None:
        assert asset.issuer is not None
        self.send(
            TrustSet(
                account=holder.classic_address,
                limit_amount=IssuedCurrencyAmount(
                    currency=asset.code, issuer=asset.issuer, value=f"{limit:f}"
                ),
            ),
            holder,
        )

    def issue(self, issuer: Wallet, holder: str, asset: Asset, amount: Decimal) -> None:
        self.send(
            Payment(
                account=issuer.classic_address,
                destination=holder,
                amount=IssuedCurrencyAmount(
                    currency=asset.code, issuer=asset.issuer or "", value=f"{amount:f}"
                ),
            ),
            issuer,
        )

    def send(self, tx: Transaction, wallet: Wallet) -> str:
        """Sign, submit and wait until validated with tesSUCCESS; return the hash.

        A public endpoint is several servers behind a balancer, and the one asked for the
        account's sequence may be ledgers behind the one that validated our last
        transaction: it gives a sequence already used (the submit answers
        ``tefPAST_SEQ``, so that signature can never apply) or does not know a new
        account yet. Until ``timeout_s`` we read again and sign anew."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            signed = self._sign_next(tx, wallet)
            result = {} if signed is None else self.rpc("submit", tx_blob=encode(signed.to_xrpl()))
            if signed is not None and result.get("engine_result") != "tefPAST_SEQ":
                break
            if time.monotonic() >= deadline:
                raise ProvisioningError(
                    f"{type(tx).__name__}: no current sequence for {wallet.classic_address} "
                    f"within {self.timeout_s} s ({result or 'account not found'})"
                )
            time.sleep(self.poll_s)
        if result.get("engine_result") not in ("tesSUCCESS", "terQUEUED"):
            raise ProvisioningError(f"{type(tx).__name__} refused: {result}")
        return self._wait_validated(signed.get_hash())

    def _sign_next(self, tx: Transaction, wallet: Wallet) -> Transaction | None:
        """``tx`` signed with the sequence the server now reports, or None when the
        server does not know the account."""
        info = self.rpc("account_info", account=wallet.classic_address, ledger_index="current")
        if "account_data" not in info:
            return None
        current = int(self.rpc("ledger_current")["ledger_current_index"])
        fields = tx.to_dict() | {
            "sequence": int(info["account_data"]["Sequence"]),
            "fee": "12",
            "last_ledger_sequence": current + 40,
        }
        signed: Transaction = sign(type(tx).from_dict(fields), wallet)
        return signed

    def token_balance(self, holder: str, asset: Asset) -> Decimal:
        lines = self.rpc(
            "account_lines", account=holder, peer=asset.issuer, ledger_index="validated"
        )
        return sum(
            (Decimal(x["balance"]) for x in lines.get("lines", []) if x["currency"] == asset.code),
            Decimal(0),
        )

    def xrp_balance(self, address: str) -> Decimal:
        data = self.rpc("account_info", account=address, ledger_index="validated")
        return Decimal(data["account_data"]["Balance"]) / Decimal(1_000_000)

    def _wait_validated(self, tx_hash: str) -> str:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            result = self.rpc("tx", transaction=tx_hash)
            if result.get("validated"):
                code = result.get("meta", {}).get("TransactionResult")
                if code != "tesSUCCESS":
                    raise ProvisioningError(f"{tx_hash} validated with {code}")
                return tx_hash
            time.sleep(self.poll_s)
        raise ProvisioningError(f"{tx_hash} not validated within {self.timeout_s} s")

    def _wait_for_account(self, address: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if "account_data" in self.rpc(
                "account_info", account=address, ledger_index="validated"
            ):
                return
            time.sleep(self.poll_s)
        raise ProvisioningError(f"{address} not funded within {self.timeout_s} s")


class StellarProvisioner:
    """Accounts and credit assets on a Horizon endpoint, funded by friendbot.

    ``friendbot_url`` is friendbot's address (the testnet's
    ``https://friendbot.stellar.org``); by default the local node's, ``{horizon}/friendbot``.
    ``poll_s`` and ``timeout_s`` bound the wait for a funded account to show on Horizon."""

    def __init__(
        self,
        horizon_url: str,
        network_passphrase: str,
        *,
        friendbot_url: str | None = None,
        poll_s: float = _POLL_S,
        timeout_s: float = _TIMEOUT_S,
    ) -> None:
        self.url = horizon_url
        self.passphrase = network_passphrase
        self.friendbot_url = friendbot_url or f"{horizon_url.rstrip('/')}/friendbot"
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.server = Server(horizon_url, client=RequestsClient(num_retries=0))

    def close(self) -> None:
        self.server.close()

    def account(self) -> Keypair:
        """A new account funded by friendbot, returned once ``horizon_url`` shows it.
        Raises ``ProvisioningError`` when friendbot refuses or the account does not
        show within ``timeout_s``."""
        keypair = Keypair.random()
        _ask_faucet(
            self.friendbot_url,
            lambda: httpx.get(
                self.friendbot_url, params={"addr": keypair.public_key}, timeout=self.timeout_s
            ),
            self.poll_s,
        )
        self._wait_for_account(keypair.public_key)
        return keypair

    def _wait_for_account(self, account_id: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            try:
                self.server.accounts().account_id(account_id).call()
            except NotFoundError:
                time.sleep(self.poll_s)
            else:
                return
        raise ProvisioningError(f"{account_id} not funded within {self.timeout_s} s")

    def trust(self, holder: Keypair, asset: Asset, limit: Decimal | None = None) -> None:
        self.send(
            holder,
            lambda b: b.append_change_trust_op(
                _sdk(asset), None if limit is None else f"{limit:f}"
            ),
        )

    def issue(self, issuer: Keypair, holder: str, asset: Asset, amount: Decimal) -> None:
        self.send(issuer, lambda b: b.append_payment_op(holder, _sdk(asset), f"{amount:f}"))

    def send(self, source: Keypair, build: Any) -> str:
        account = self.server.load_account(source.public_key)
        builder = TransactionBuilder(account, network_passphrase=self.passphrase, base_fee=100)
        build(builder)
        envelope = builder.set_timeout(120).build()
        envelope.sign(source)
        answer = self.server.submit_transaction(envelope)
        if not answer.get("successful"):
            raise ProvisioningError(f"set-up transaction failed: {answer}")
        return str(answer["hash"])

    def balance(self, account: str, asset: Asset) -> Decimal:
        for line in self.server.accounts().account_id(account).call()["balances"]:
            if asset.is_native and line["asset_type"] == "native":
                return Decimal(line["balance"])
            if (line.get("asset_code"), line.get("asset_issuer")) == (asset.code, asset.issuer):
                return Decimal(line["balance"])
        return Decimal(0)


def _ask_faucet(url: str, request: Callable[[], httpx.Response], pause_s: float) -> httpx.Response:
    """The faucet's 200 answer, asking again after a transient failure; raises
    ``ProvisioningError`` with the faucet's last answer otherwise."""
    problem = ""
    for attempt in range(1, _FAUCET_ATTEMPTS + 1):
        try:
            answer = request()
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if answer.status_code == 200:
                return answer
            problem = f"HTTP {answer.status_code}: {answer.text[:500]}"
            if answer.status_code != 429 and answer.status_code < 500:
                break  # refused for good (a bad address, an account that exists)
        if attempt < _FAUCET_ATTEMPTS:
            time.sleep(pause_s * 10 * attempt)
    raise ProvisioningError(f"faucet {url} refused: {problem}")


def _faucet_address(answer: httpx.Response) -> str | None:
    """The address an XRPL faucet says it funded: ``account.classicAddress`` (or
    ``account.address``) of its JSON answer, as the testnet faucet and xrpl.js read it."""
    try:
        body = answer.json()
    except ValueError as exc:
        raise ProvisioningError(f"faucet answered no JSON: {answer.text[:200]!r}") from exc
    account = body.get("account") if isinstance(body, dict) else None
    if not isinstance(account, dict):
        raise ProvisioningError(f"faucet answer names no account: {body!r}")
    address = account.get("classicAddress") or account.get("address")
    return address if isinstance(address, str) else None


def _sdk(asset: Asset) -> SdkAsset:
    return SdkAsset.native() if asset.is_native else SdkAsset(asset.code, asset.issuer)


__all__ = ["Network", "ProvisioningError", "StellarProvisioner", "XrplProvisioner"]
