"""Provisioning the local networks: funded accounts, issuers, trust lines, balances.

Everything goes over the wire with the ordinary client libraries (xrpl-py, stellar-sdk),
as an operator would do it against a testnet; the demo and the DVP tests use it. Every
set-up transaction must succeed and be validated before the next one is sent.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
from stellar_sdk import Asset as SdkAsset
from stellar_sdk import Keypair, Network, Server, TransactionBuilder
from stellar_sdk.client.requests_client import RequestsClient
from xrpl.core.binarycodec import encode
from xrpl.models.amounts import IssuedCurrencyAmount
from xrpl.models.transactions import AccountSet, AccountSetAsfFlag, Payment, Transaction, TrustSet
from xrpl.transaction import sign
from xrpl.wallet import Wallet

from adapters.chain import Asset

_POLL_S = 0.02
_TIMEOUT_S = 20.0


class ProvisioningError(RuntimeError):
    """A set-up transaction failed; the message carries the ledger's answer."""


class XrplProvisioner:
    """Accounts and issued tokens on a rippled JSON-RPC endpoint with a faucet."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=10.0)

    def close(self) -> None:
        self._http.close()

    def rpc(self, method: str, **params: Any) -> dict[str, Any]:
        answer = self._http.post("/", json={"method": method, "params": [params]})
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()["result"]
        return result

    def account(self, xrp: int = 1_000) -> Wallet:
        """A new funded account (the faucet, as on the testnet)."""
        wallet = Wallet.create()
        answer = self._http.post(
            "/accounts", json={"destination": wallet.classic_address, "xrpAmount": xrp}
        )
        if answer.status_code != 200:
            raise ProvisioningError(f"faucet refused {wallet.classic_address}: {answer.text}")
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
        """Sign, submit and wait until validated with tesSUCCESS; return the hash."""
        info = self.rpc("account_info", account=wallet.classic_address, ledger_index="current")
        current = int(self.rpc("ledger_current")["ledger_current_index"])
        fields = tx.to_dict() | {
            "sequence": int(info["account_data"]["Sequence"]),
            "fee": "12",
            "last_ledger_sequence": current + 40,
        }
        signed = sign(type(tx).from_dict(fields), wallet)
        result = self.rpc("submit", tx_blob=encode(signed.to_xrpl()))
        if result.get("engine_result") not in ("tesSUCCESS", "terQUEUED"):
            raise ProvisioningError(f"{type(tx).__name__} refused: {result}")
        return self._wait_validated(signed.get_hash())

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
        deadline = time.monotonic() + _TIMEOUT_S
        while time.monotonic() < deadline:
            result = self.rpc("tx", transaction=tx_hash)
            if result.get("validated"):
                code = result.get("meta", {}).get("TransactionResult")
                if code != "tesSUCCESS":
                    raise ProvisioningError(f"{tx_hash} validated with {code}")
                return tx_hash
            time.sleep(_POLL_S)
        raise ProvisioningError(f"{tx_hash} not validated within {_TIMEOUT_S} s")

    def _wait_for_account(self, address: str) -> None:
        deadline = time.monotonic() + _TIMEOUT_S
        while time.monotonic() < deadline:
            if "account_data" in self.rpc(
                "account_info", account=address, ledger_index="validated"
            ):
                return
            time.sleep(_POLL_S)
        raise ProvisioningError(f"{address} not funded within {_TIMEOUT_S} s")


class StellarProvisioner:
    """Accounts and credit assets on a Horizon endpoint with friendbot."""

    def __init__(self, horizon_url: str, network_passphrase: str) -> None:
        self.url = horizon_url
        self.passphrase = network_passphrase
        self.server = Server(horizon_url, client=RequestsClient(num_retries=0))

    def close(self) -> None:
        self.server.close()

    def account(self) -> Keypair:
        keypair = Keypair.random()
        answer = httpx.get(
            f"{self.url}/friendbot", params={"addr": keypair.public_key}, timeout=_TIMEOUT_S
        )
        if answer.status_code != 200:
            raise ProvisioningError(f"friendbot refused {keypair.public_key}: {answer.text}")
        return keypair

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


def _sdk(asset: Asset) -> SdkAsset:
    return SdkAsset.native() if asset.is_native else SdkAsset(asset.code, asset.issuer)


__all__ = ["Network", "ProvisioningError", "StellarProvisioner", "XrplProvisioner"]
