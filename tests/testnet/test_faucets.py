"""The provisioners against faucets that are hosts of their own, as on the testnets.

Offline: a small HTTP server answers like the XRPL testnet faucet (``POST /accounts``,
JSON in and out, an answer as soon as the payment is submitted) and like Stellar's
friendbot (``GET /?addr=``), and funds the account on a local network a little after
answering, as a public faucet's payment reaches a validated ledger some closes later.
The provisioner must send the faucet's request shape, read its answer, and hand out an
account only once the ledger it talks to shows it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from xrpl.core.addresscodec import classic_address_to_xaddress, is_valid_classic_address
from xrpl.models.transactions import AccountSet, AccountSetAsfFlag
from xrpl.wallet import Wallet

from adapters.chain import Asset
from adapters.localnet.provision import ProvisioningError, StellarProvisioner, XrplProvisioner
from adapters.localnet.stellar import StellarNode
from adapters.localnet.xrpl import XrplNode

#: how long after answering the fake faucets fund the account
FUNDING_DELAY_S = 0.4
#: what the fake XRPL faucet gives when asked for no amount (the real one: its XRP_AMOUNT)
FAUCET_DEFAULT_XRP = 400
XLM = Asset("XLM")


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class FakeFaucet:
    """An HTTP server whose answers come from ``answer(request)``; it records every
    request and runs ``fund`` (if the answer says so) ``FUNDING_DELAY_S`` later."""

    answer: Callable[[Seen], tuple[int, Any, Callable[[], None] | None]]
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    _funders: list[threading.Thread] = field(default_factory=list)

    def start(self) -> FakeFaucet:
        faucet = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                seen = Seen(self.command, parts.path, parse_qs(parts.query), body)
                faucet.seen.append(seen)
                status, payload, fund = faucet.answer(seen)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if fund is not None:
                    faucet._fund_later(fund)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _fund_later(self, fund: Callable[[], None]) -> None:
        def run() -> None:
            time.sleep(FUNDING_DELAY_S)
            fund()

        thread = threading.Thread(target=run, daemon=True)
        self._funders.append(thread)
        thread.start()

    def stop(self) -> None:
        for thread in self._funders:
            thread.join(timeout=10)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def xrpl_faucet_answer(node: XrplNode) -> Callable[[Seen], tuple[int, Any, Any]]:
    """The XRPL testnet faucet's rules (xpring-eng/testnet-faucet, routes/accounts.ts):
    ``destination`` a classic address, ``xrpAmount`` a string of digits (the service
    calls ``.match`` on it: a JSON number makes it fail), the answer
    ``{"account": {xAddress, classicAddress, address}, "amount": n}`` once submitted."""

    def answer(seen: Seen) -> tuple[int, Any, Any]:
        if seen.method != "POST" or seen.path != "/accounts" or not isinstance(seen.body, dict):
            return 404, {"error": "Not Found"}, None
        destination = seen.body.get("destination")
        if not isinstance(destination, str) or not is_valid_classic_address(destination):
            return 400, {"error": "Invalid destination"}, None
        amount = seen.body.get("xrpAmount", str(FAUCET_DEFAULT_XRP))
        if not isinstance(amount, str):
            return 500, {"error": "Internal Server Error"}, None
        if not re.fullmatch(r"\d+", amount):
            return 400, {"error": "Invalid amount", "detail": "Must be an integer"}, None
        account = {
            "xAddress": classic_address_to_xaddress(destination, None, is_test_network=True),
            "classicAddress": destination,
            "address": destination,
        }
        return (
            200,
            {"account": account, "amount": int(amount)},
            lambda: node.fund(destination, int(amount)),
        )

    return answer


def friendbot_answer(node: StellarNode) -> Callable[[Seen], tuple[int, Any, Any]]:
    """Friendbot's rules: ``GET ?addr=G...``; it answers with the funding transaction."""

    def answer(seen: Seen) -> tuple[int, Any, Any]:
        addr = seen.query.get("addr", [""])[0]
        if seen.method != "GET" or not addr.startswith("G"):
            return 400, {"type": "bad_request", "detail": "addr is required"}, None

        def fund() -> None:
            funded = httpx.get(f"{node.base_url}/friendbot", params={"addr": addr}, timeout=10)
            assert funded.status_code == 200, funded.text

        return 200, {"successful": True, "hash": "00" * 32}, fund

    return answer


@pytest.fixture(scope="module")
def xrpl_node() -> Iterator[XrplNode]:
    node = XrplNode(close_interval_s=0.05, idle_interval_s=0.2)
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def stellar_node() -> Iterator[StellarNode]:
    node = StellarNode(close_interval_s=0.02)
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def xrpl_faucet(xrpl_node: XrplNode) -> Iterator[FakeFaucet]:
    faucet = FakeFaucet(xrpl_faucet_answer(xrpl_node)).start()
    yield faucet
    faucet.stop()


def _provisioner(node: XrplNode, faucet: FakeFaucet) -> XrplProvisioner:
    assert node.url is not None
    return XrplProvisioner(node.url, faucet_url=f"{faucet.url}/accounts", poll_s=0.05, timeout_s=10)


# -- XRPL ------------------------------------------------------------------------------


def test_an_account_comes_from_the_faucet_host_once_validated(
    xrpl_node: XrplNode, xrpl_faucet: FakeFaucet
) -> None:
    provisioner = _provisioner(xrpl_node, xrpl_faucet)
    wallet = provisioner.account(xrp=250)
    # the faucet answered before funding: the account is there because we waited
    assert provisioner.xrp_balance(wallet.classic_address) == Decimal(250)
    assert [(s.method, s.path, s.body) for s in xrpl_faucet.seen] == [
        ("POST", "/accounts", {"destination": wallet.classic_address, "xrpAmount": "250"})
    ]
    provisioner.close()


def test_without_an_amount_the_faucet_gives_its_own(
    xrpl_node: XrplNode, xrpl_faucet: FakeFaucet
) -> None:
    provisioner = _provisioner(xrpl_node, xrpl_faucet)
    wallet = provisioner.account()
    assert xrpl_faucet.seen[0].body == {"destination": wallet.classic_address}
    assert provisioner.xrp_balance(wallet.classic_address) == Decimal(FAUCET_DEFAULT_XRP)
    provisioner.close()


def test_the_local_nodes_faucet_stays_the_default(xrpl_node: XrplNode) -> None:
    assert xrpl_node.url is not None
    provisioner = XrplProvisioner(xrpl_node.url)
    assert provisioner.faucet_url == f"{xrpl_node.url}/accounts"
    # the local node's faucet reads the amount as a JSON integer
    wallet = provisioner.account(xrp=123)
    assert provisioner.xrp_balance(wallet.classic_address) == Decimal(123)
    provisioner.close()


def test_a_faucet_funding_another_account_is_refused(xrpl_node: XrplNode) -> None:
    stranger = Wallet.create().classic_address

    def answer(seen: Seen) -> tuple[int, Any, Any]:
        return 200, {"account": {"classicAddress": stranger, "address": stranger}}, None

    faucet = FakeFaucet(answer).start()
    try:
        with pytest.raises(ProvisioningError, match=f"funded '{stranger}'"):
            _provisioner(xrpl_node, faucet).account()
    finally:
        faucet.stop()


def test_a_faucet_answer_naming_no_account_is_refused(xrpl_node: XrplNode) -> None:
    faucet = FakeFaucet(lambda seen: (200, "funded", None)).start()
    try:
        with pytest.raises(ProvisioningError, match="names no account"):
            _provisioner(xrpl_node, faucet).account()
    finally:
        faucet.stop()


def test_a_faucet_failing_under_load_is_asked_again(xrpl_node: XrplNode) -> None:
    real = xrpl_faucet_answer(xrpl_node)

    def answer(seen: Seen) -> tuple[int, Any, Any]:
        if len(faucet.seen) <= 2:
            return 503, {"error": "Unable to fund account. Try again later"}, None
        return real(seen)

    faucet = FakeFaucet(answer).start()
    try:
        provisioner = _provisioner(xrpl_node, faucet)
        wallet = provisioner.account(xrp=50)
        assert len(faucet.seen) == 3
        assert provisioner.xrp_balance(wallet.classic_address) == Decimal(50)
        provisioner.close()
    finally:
        faucet.stop()


def test_a_faucet_refusing_for_good_is_not_asked_again(xrpl_node: XrplNode) -> None:
    faucet = FakeFaucet(lambda seen: (400, {"error": "Invalid destination"}, None)).start()
    try:
        with pytest.raises(ProvisioningError, match=r"HTTP 400.*Invalid destination"):
            _provisioner(xrpl_node, faucet).account()
        assert len(faucet.seen) == 1
    finally:
        faucet.stop()


def test_a_lagging_server_behind_the_url_does_not_fail_a_setup_transaction(
    xrpl_node: XrplNode,
) -> None:
    """A public endpoint balances reads over servers; one a few ledgers behind reports
    the sequence our last transaction already used, and the submit is refused as
    tefPAST_SEQ. Provisioning reads again until the answer is current."""
    assert xrpl_node.url is not None
    provisioner = XrplProvisioner(xrpl_node.url, poll_s=0.05, timeout_s=15)
    issuer = provisioner.account()
    # old enough that the lagging server knows the account, only not its last sequence
    funded_in = _validated_index(provisioner)
    while _validated_index(provisioner) < funded_in + 3:
        time.sleep(0.05)
    provisioner.send(
        AccountSet(account=issuer.classic_address, set_flag=AccountSetAsfFlag.ASF_DEFAULT_RIPPLE),
        issuer,
    )
    xrpl_node.faults.lagging_server(ledgers_behind=2, share=1)
    try:
        stale = provisioner.rpc(
            "account_info", account=issuer.classic_address, ledger_index="current"
        )
        provisioner.send(
            AccountSet(
                account=issuer.classic_address,
                set_flag=AccountSetAsfFlag.ASF_ALLOW_TRUSTLINE_LOCKING,
            ),
            issuer,
        )
    finally:
        xrpl_node.faults.clear()
    fresh = provisioner.rpc(
        "account_info", account=issuer.classic_address, ledger_index="validated"
    )
    # the stale answer gave the sequence the first AccountSet used
    assert stale["account_data"]["Sequence"] == fresh["account_data"]["Sequence"] - 2
    lsf_allow_trust_line_locking = 0x40000000
    assert fresh["account_data"]["Flags"] & lsf_allow_trust_line_locking
    provisioner.close()


def _validated_index(provisioner: XrplProvisioner) -> int:
    return int(provisioner.rpc("ledger", ledger_index="validated")["ledger_index"])


# -- Stellar ---------------------------------------------------------------------------


def test_a_stellar_account_comes_from_friendbot_once_horizon_shows_it(
    stellar_node: StellarNode,
) -> None:
    friendbot = FakeFaucet(friendbot_answer(stellar_node)).start()
    try:
        provisioner = StellarProvisioner(
            stellar_node.base_url,
            stellar_node.network_passphrase,
            friendbot_url=f"{friendbot.url}/",
            poll_s=0.05,
            timeout_s=10,
        )
        keypair = provisioner.account()
        # friendbot answered before funding: the account is there because we waited
        assert provisioner.balance(keypair.public_key, XLM) == Decimal(10_000)
        assert [(s.method, s.path, s.query) for s in friendbot.seen] == [
            ("GET", "/", {"addr": [keypair.public_key]})
        ]
        provisioner.close()
    finally:
        friendbot.stop()


def test_friendbot_on_horizon_stays_the_default(stellar_node: StellarNode) -> None:
    provisioner = StellarProvisioner(stellar_node.base_url, stellar_node.network_passphrase)
    assert provisioner.friendbot_url == f"{stellar_node.base_url}/friendbot"
    keypair = provisioner.account()
    assert provisioner.balance(keypair.public_key, XLM) == Decimal(10_000)
    provisioner.close()


def test_friendbot_refusing_is_an_error(stellar_node: StellarNode) -> None:
    friendbot = FakeFaucet(
        lambda seen: (400, {"detail": "createAccountAlreadyExist"}, None)
    ).start()
    try:
        provisioner = StellarProvisioner(
            stellar_node.base_url, stellar_node.network_passphrase, friendbot_url=friendbot.url
        )
        with pytest.raises(ProvisioningError, match="createAccountAlreadyExist"):
            provisioner.account()
        provisioner.close()
    finally:
        friendbot.stop()
