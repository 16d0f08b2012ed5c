"""JSON-RPC methods, answered in rippled's shapes (API v2, with v1 where it differs).

Every handler runs under the node's lock and returns the ``result`` object. Errors are
``RpcError`` and become rippled's error shape: ``error``, ``error_code``,
``error_message``, ``request`` and ``status: "error"``.

Methods: account_info, account_lines, account_objects, account_tx, deposit_authorized,
feature, fee, ledger, ledger_accept, ledger_closed, ledger_current, ledger_entry, ping,
server_info, server_state, submit, tx, tx_history (API v1), and the admin method
``localnet_faults``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

from xrpl.core.addresscodec import is_valid_classic_address
from xrpl.core.binarycodec import encode

from adapters.localnet.xrpl import amendments, codes, hashing, protocol, trustlines
from adapters.localnet.xrpl.accounts import verify_deposit_preauth
from adapters.localnet.xrpl.amounts import amount_to_json, text
from adapters.localnet.xrpl.engine import InvalidTransaction, LedgerChain, SubmitResult
from adapters.localnet.xrpl.faults import FaultPlan
from adapters.localnet.xrpl.lagging import ChainReader, LaggingView
from adapters.localnet.xrpl.ledger import ClosedLedger, TxRecord, close_time_iso
from adapters.localnet.xrpl.state import ApplyView, JsonObject, LedgerState, owned_objects
from adapters.localnet.xrpl.txq import REFERENCE_LEVEL, level_to_drops

_log = logging.getLogger(__name__)
BUILD_VERSION = "2.4.0-localnet"
# Methods only the fresh server answers: writes, admin, and the fee and amendment
# settings, which every server of a network shares.
FRESH_ONLY = frozenset({"submit", "ledger_accept", "localnet_faults", "fee", "feature", "ping"})
TX_HISTORY_PAGE = 20  # transactions per tx_history answer (getTxHistory's LIMIT)
MAX_TX_RANGE = 1000  # Tx.cpp: a min_ledger..max_ledger span wider than this is refused

# (token, number, message) as in rippled's ErrorCodes.cpp
_ERRORS: dict[str, tuple[int, str]] = {
    "actMalformed": (35, "Account malformed."),
    "actNotFound": (19, "Account not found."),
    "badFeature": (40, "Feature unknown or invalid."),
    "dstActMalformed": (48, "Destination account is malformed."),
    "dstActNotFound": (50, "Destination account not found."),
    "excessiveLgrRange": (78, "Ledger range exceeds 1000."),
    "invalidLgrRange": (79, "Ledger range is invalid."),
    "srcActMalformed": (65, "Source account is malformed."),
    "srcActNotFound": (67, "Source account not found."),
    "entryNotFound": (21, "Entry not found."),
    "internal": (73, "Internal error."),
    "invalidParams": (31, "Invalid parameters."),
    "lgrIdxMalformed": (58, "ledgerIndexMalformed"),
    "lgrNotFound": (21, "ledgerNotFound"),
    "notImpl": (74, "Not implemented."),
    "wrongNetwork": (4, "Wrong network."),
    "notSynced": (18, "Not synced to the network."),
    "txnNotFound": (29, "Transaction not found."),
    "unknownCmd": (32, "Unknown method."),
}

# Ledger entry types by RPC name (ledger_entries.macro), as the ``type`` filter of
# account_objects names them; the canonical names are accepted too (case-insensitive).
_LEDGER_ENTRY_TYPES: dict[str, str] = {
    "account": "AccountRoot",
    "amendments": "Amendments",
    "amm": "AMM",
    "bridge": "Bridge",
    "check": "Check",
    "credential": "Credential",
    "delegate": "Delegate",
    "deposit_preauth": "DepositPreauth",
    "did": "DID",
    "directory": "DirectoryNode",
    "escrow": "Escrow",
    "fee": "FeeSettings",
    "hashes": "LedgerHashes",
    "mpt_issuance": "MPTokenIssuance",
    "mptoken": "MPToken",
    "nft_offer": "NFTokenOffer",
    "nft_page": "NFTokenPage",
    "nunl": "NegativeUNL",
    "offer": "Offer",
    "oracle": "Oracle",
    "payment_channel": "PayChannel",
    "permissioned_domain": "PermissionedDomain",
    "signer_list": "SignerList",
    "state": "RippleState",
    "ticket": "Ticket",
    "vault": "Vault",
    "xchain_owned_claim_id": "XChainOwnedClaimID",
    "xchain_owned_create_account_claim_id": "XChainOwnedCreateAccountClaimID",
}
# Singletons and directories no account owns (RPCHelpers isAccountObjectsValidType).
_NOT_OWNED = frozenset(
    {"Amendments", "DirectoryNode", "FeeSettings", "LedgerHashes", "NegativeUNL"}
)


def _object_type_filter(params: JsonObject) -> str | None:
    """account_objects' ``type``: the LedgerEntryType to keep, or None for all.

    As rippled's chooseLedgerEntryType: the RPC name (exact) or the canonical name
    (any case); an unknown one, or a type no account can own, is invalidParams.
    """
    if "type" not in params:
        return None
    wanted = params["type"]
    if not isinstance(wanted, str):
        raise RpcError("invalidParams", "Invalid field 'type', not string.")
    entry_type = _LEDGER_ENTRY_TYPES.get(wanted)
    if entry_type is None:
        canonical = {name.lower(): name for name in _LEDGER_ENTRY_TYPES.values()}
        entry_type = canonical.get(wanted.lower())
    if entry_type is None or entry_type in _NOT_OWNED:
        raise RpcError("invalidParams", "Invalid field 'type'.")
    return entry_type


def _is_hash256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def _is_uint32(value: object) -> bool:
    """What Json::Value::asUInt accepts without throwing: a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return False
    if isinstance(value, str):
        return value.isdigit() and int(value) <= 0xFFFFFFFF
    return 0 <= value <= 0xFFFFFFFF


def _strict_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, not {value!r}")
    return value


def _share(value: object) -> Fraction:
    """A share of reads: a JSON number or a fraction text such as "1/3"."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"share must be a number, not {value!r}")
    return Fraction(str(value))


def with_deliver_max(tx_json: JsonObject, api_version: int) -> JsonObject:
    """A Payment as rippled's output shows it (RPCHelpers ``insertDeliverMax``).

    ``DeliverMax`` carries the Amount, whose name misleads for partial payments; API v1
    shows both, v2 only ``DeliverMax``. The signed transaction is unchanged.
    """
    shown = dict(tx_json)
    if shown.get("TransactionType") == "Payment" and "Amount" in shown:
        shown["DeliverMax"] = shown["Amount"]
        if api_version > 1:
            del shown["Amount"]
    return shown


class RpcError(Exception):
    def __init__(self, token: str, message: str | None = None, **extra: Any) -> None:
        number, default_message = _ERRORS[token]
        super().__init__(token)
        self.token = token
        self.number = number
        self.message = message or default_message
        self.extra = extra

    def to_result(self, request: JsonObject) -> JsonObject:
        return {
            **self.extra,
            "error": self.token,
            "error_code": self.number,
            "error_message": self.message,
            "request": request,
            "status": "error",
        }


class NodeApi(Protocol):
    """What the RPC layer needs from the node that hosts it."""

    chain: LedgerChain
    faults: FaultPlan
    started_monotonic: float

    def close_ledger(self) -> ClosedLedger: ...

    def advance_time(self, seconds: int) -> None: ...


@dataclass
class _Selected:
    """The ledger a request reads: a closed one, or the open one (``closed is None``)."""

    state: LedgerState
    closed: ClosedLedger | None
    sequence: int

    def fields(self, api_version: int) -> JsonObject:
        if self.closed is None:
            return {"ledger_current_index": self.sequence, "validated": False}
        return {
            "ledger_hash": self.closed.header.hash,
            "ledger_index": self.sequence,
            "validated": True,
        }


@dataclass
class RpcService:
    node: NodeApi
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: calls handled, by method (what a client costs the node; tests and drills read it)
    calls: Counter[str] = field(default_factory=Counter)
    #: amendment ids an admin vetoed through ``feature`` (a vote only, never a rule)
    vetoed: set[str] = field(default_factory=set)
    #: the server answering the call in progress, when it is the lagging one
    _view: ChainReader | None = field(default=None, init=False, repr=False)

    def handle(self, method: str, params: JsonObject) -> JsonObject:
        """The ``result`` object for one call (never raises for bad input)."""
        request = {**params, "command": method}
        handler: Callable[[JsonObject, int], JsonObject] | None = getattr(
            self, f"_m_{method}", None
        )
        if handler is None:
            return RpcError("unknownCmd").to_result(request)
        api_version = params.get("api_version", 1)
        if api_version not in (1, 2):
            return {
                "error": "invalid_API_version",
                "error_code": 6,
                "error_message": "API version must be an integer in range [1, 2].",
                "request": request,
                "status": "error",
            }
        try:
            with self.lock:
                self.calls[method] += 1
                self._view = self._lagging_view(method)
                try:
                    result = handler(params, int(api_version))
                finally:
                    self._view = None
        except RpcError as exc:
            return exc.to_result(request)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            # rippled's RPC dispatcher answers an exception in a handler with rpcINTERNAL
            # (RPCHandler.cpp); never a dropped connection.
            _log.warning("%s failed on %r", method, params, exc_info=exc)
            return RpcError("internal").to_result(request)
        # invalidTransaction is an error rippled builds by hand (no error_code).
        result.setdefault("status", "error" if "error" in result else "success")
        return result

    # --- helpers --------------------------------------------------------------------

    @property
    def chain(self) -> ChainReader:
        """The ledgers of the server answering this call (faults.py: lagging_server)."""
        return self._view if self._view is not None else self.node.chain

    def _lagging_view(self, method: str) -> ChainReader | None:
        if method in FRESH_ONLY:
            return None
        behind = self.node.faults.take_lagging_read()
        return LaggingView.behind(self.node.chain, behind) if behind is not None else None

    def _select(self, params: JsonObject, default: str = "current") -> _Selected:
        chain = self.chain
        if "ledger_hash" in params:
            ledger = chain.ledger_by_hash(str(params["ledger_hash"]))
            return self._closed_selection(ledger)
        spec = params.get("ledger_index", default)
        if spec in ("current", None):
            return _Selected(chain.open_state, None, chain.open_sequence)
        if spec in ("validated", "closed"):
            return self._closed_selection(chain.last_closed)
        if isinstance(spec, str) and spec.isdigit():
            spec = int(spec)
        if not isinstance(spec, int) or isinstance(spec, bool):
            raise RpcError("invalidParams", "ledgerIndexMalformed")
        if spec == chain.open_sequence:
            return _Selected(chain.open_state, None, spec)
        return self._closed_selection(chain.ledger(spec))

    @staticmethod
    def _closed_selection(ledger: ClosedLedger | None) -> _Selected:
        if ledger is None or ledger.state is None:
            raise RpcError("lgrNotFound")
        return _Selected(ledger.state, ledger, ledger.header.sequence)

    @staticmethod
    def _account_param(
        params: JsonObject, name: str = "account", *, string_checked: bool = False
    ) -> str:
        """The address in ``params[name]``; actMalformed if it is not one.

        ``string_checked``: a value that is not a string is invalidParams, as handlers
        that read the field with ``isString`` first answer (DepositAuthorized.cpp).
        """
        if name not in params:
            raise RpcError("invalidParams", f"Missing field '{name}'.")
        account = params[name]
        if string_checked and not isinstance(account, str):
            raise RpcError("invalidParams", f"Invalid field '{name}', not a string.")
        if not isinstance(account, str) or not is_valid_classic_address(account):
            raise RpcError("actMalformed")
        return account

    @staticmethod
    def _account_root(selected: _Selected, account: str, api_version: int) -> JsonObject:
        root = selected.state.read(hashing.account_index(account))
        if root is None:
            raise RpcError("actNotFound", account=account, **selected.fields(api_version))
        return root

    # --- server ---------------------------------------------------------------------

    def _m_ping(self, params: JsonObject, api_version: int) -> JsonObject:
        return {}

    def _validated_summary(self, in_drops: bool) -> JsonObject:
        header = self.chain.last_closed.header
        fees = self.chain.fees
        age = max(0, self.node_now_ripple_s() - header.close_time)
        summary: JsonObject = {"age": age, "hash": header.hash, "seq": header.sequence}
        if in_drops:
            summary |= {
                "base_fee": fees.base_fee_drops,
                "reserve_base": fees.reserve_base_drops,
                "reserve_inc": fees.reserve_inc_drops,
                "close_time": header.close_time,
            }
        else:
            # server_info states these in XRP as JSON numbers (display only; the
            # amounts clients compute with come from server_state or fee, in drops).
            summary |= {
                "base_fee_xrp": fees.base_fee_drops / protocol.DROPS_PER_XRP,
                "reserve_base_xrp": fees.reserve_base_drops / protocol.DROPS_PER_XRP,
                "reserve_inc_xrp": fees.reserve_inc_drops / protocol.DROPS_PER_XRP,
            }
        return summary

    def node_now_ripple_s(self) -> int:
        return self.chain.clock.ripple_now_s()

    def _server_common(self) -> JsonObject:
        chain = self.chain
        first = chain.first_sequence
        return {
            "build_version": BUILD_VERSION,
            "complete_ledgers": f"{first}-{chain.last_closed.header.sequence}",
            "hostid": "LOCALNET",
            "io_latency_ms": 1,
            "last_close": {"converge_time_s": 0, "proposers": 0},
            "network_id": chain.network_id,
            "peers": 0,
            "pubkey_node": "n9LocalnetStandaloneNodeKey",
            "server_state": "full",
            "time": close_time_iso(self.node_now_ripple_s()),
            "uptime": int(time.monotonic() - self.node.started_monotonic),
            "validation_quorum": 0,
            "standalone": True,
        }

    def _m_server_info(self, params: JsonObject, api_version: int) -> JsonObject:
        info = self._server_common() | {
            "load_factor": 1,
            "validated_ledger": self._validated_summary(in_drops=False),
        }
        return {"info": info}

    def _m_server_state(self, params: JsonObject, api_version: int) -> JsonObject:
        state = self._server_common() | {
            "load_base": 256,
            "load_factor": 256,
            "validated_ledger": self._validated_summary(in_drops=True),
        }
        return {"state": state}

    def _m_fee(self, params: JsonObject, api_version: int) -> JsonObject:
        """Fee1.cpp / TxQ::doRPC: the open ledger's price, as levels and in drops."""
        chain = self.node.chain  # the queue lives on the server that takes submits
        queue = chain.queue
        base = chain.fees.base_fee_drops
        open_level = chain.open_ledger_level()
        return {
            "current_ledger_size": str(len(chain.open_records)),
            "current_queue_size": str(len(queue)),
            "drops": {
                "base_fee": str(base),
                "median_fee": str(level_to_drops(queue.multiplier, base)),
                "minimum_fee": str(level_to_drops(queue.minimum_level(), base)),
                "open_ledger_fee": str(level_to_drops(open_level, base)),
            },
            "expected_ledger_size": str(queue.setup.expected_ledger_size),
            "ledger_current_index": chain.open_sequence,
            "levels": {
                "median_level": str(queue.multiplier),
                "minimum_level": str(queue.minimum_level()),
                "open_ledger_level": str(open_level),
                "reference_level": str(REFERENCE_LEVEL),
            },
            "max_queue_size": str(queue.setup.queue_capacity),
        }

    def _m_feature(self, params: JsonObject, api_version: int) -> JsonObject:
        """Feature1.cpp: every amendment this node implements, or one by name or id.

        The port is an admin port, so ``vetoed`` is shown and may be set; a veto only
        changes how this server would vote, never what a ledger has enabled.
        """
        if "feature" not in params:
            return {"features": {fid: self._feature_json(fid) for fid in amendments.BY_ID}}
        wanted = params["feature"]
        if not isinstance(wanted, str):
            raise RpcError("badFeature")
        fid = amendments.find(wanted)
        if fid is None:
            raise RpcError("badFeature")
        if "vetoed" in params:
            vetoed = params["vetoed"]
            if not isinstance(vetoed, bool):
                raise RpcError("invalidParams", "Invalid field 'vetoed'.")
            (self.vetoed.add if vetoed else self.vetoed.discard)(fid)
        return {fid: self._feature_json(fid)}

    def _feature_json(self, fid: str) -> JsonObject:
        name = amendments.BY_ID[fid]
        return {
            "enabled": name in self.chain.amendments,
            "name": name,
            "supported": True,
            "vetoed": fid in self.vetoed,
        }

    # --- ledgers --------------------------------------------------------------------

    def _m_ledger_current(self, params: JsonObject, api_version: int) -> JsonObject:
        return {"ledger_current_index": self.chain.open_sequence}

    def _m_ledger_closed(self, params: JsonObject, api_version: int) -> JsonObject:
        header = self.chain.last_closed.header
        return {"ledger_hash": header.hash, "ledger_index": header.sequence}

    def _m_ledger_accept(self, params: JsonObject, api_version: int) -> JsonObject:
        if self.node.faults.closing_stalled:
            raise RpcError("notSynced")
        self.node.close_ledger()
        return {"ledger_current_index": self.chain.open_sequence}

    def _m_ledger(self, params: JsonObject, api_version: int) -> JsonObject:
        selected = self._select(params, default="current")
        want_txs = bool(params.get("transactions"))
        expand = bool(params.get("expand"))
        binary = bool(params.get("binary"))
        if selected.closed is None:
            parent = self.chain.last_closed.header
            ledger: JsonObject = {
                "closed": False,
                "ledger_index": selected.sequence if api_version > 1 else str(selected.sequence),
                "parent_close_time": parent.close_time,
                "parent_hash": parent.hash,
                "total_coins": str(parent.total_drops),
            }
            records = self.chain.open_records
        else:
            ledger = selected.closed.header.to_rpc(api_version)
            records = self.chain.ledger_transactions(selected.closed)
        if want_txs:
            if expand:
                ledger["transactions"] = [
                    self._tx_entry(
                        r,
                        api_version,
                        binary,
                        validated=selected.closed is not None,
                        in_ledger=True,
                    )
                    for r in records
                ]
            else:
                ledger["transactions"] = [r.hash for r in records]
        return {"ledger": ledger} | selected.fields(api_version)

    # --- accounts -------------------------------------------------------------------

    def _m_account_info(self, params: JsonObject, api_version: int) -> JsonObject:
        account = self._account_param(params, "account" if "account" in params else "ident")
        selected = self._select(params)
        root = self._account_root(selected, account, api_version)
        flags = int(root.get("Flags", 0))
        return {
            "account_data": root | {"index": hashing.account_index(account)},
            "account_flags": {
                "allowTrustLineLocking": bool(flags & protocol.LSF_ALLOW_TRUST_LINE_LOCKING),
                "defaultRipple": bool(flags & protocol.LSF_DEFAULT_RIPPLE),
                "depositAuth": False,
                "disableMasterKey": bool(flags & protocol.LSF_DISABLE_MASTER),
                "disallowIncomingXRP": bool(flags & protocol.LSF_DISALLOW_XRP),
                "globalFreeze": False,
                "noFreeze": False,
                "passwordSpent": bool(flags & protocol.LSF_PASSWORD_SPENT),
                "requireAuthorization": bool(flags & protocol.LSF_REQUIRE_AUTH),
                "requireDestinationTag": bool(flags & protocol.LSF_REQUIRE_DEST_TAG),
            },
        } | selected.fields(api_version)

    def _owned(self, selected: _Selected, account: str) -> list[JsonObject]:
        objects = []
        for index in owned_objects(selected.state, account):
            data = selected.state.read(index)
            if data is not None:
                objects.append(data | {"index": index})
        return objects

    def _m_account_objects(self, params: JsonObject, api_version: int) -> JsonObject:
        account = self._account_param(params)
        wanted = _object_type_filter(params)
        selected = self._select(params)
        self._account_root(selected, account, api_version)
        objects = self._owned(selected, account)
        if wanted is not None:
            objects = [o for o in objects if o["LedgerEntryType"] == wanted]
        return {"account": account, "account_objects": objects} | selected.fields(api_version)

    def _m_account_lines(self, params: JsonObject, api_version: int) -> JsonObject:
        account = self._account_param(params)
        peer_filter = self._account_param(params, "peer") if "peer" in params else None
        selected = self._select(params)
        self._account_root(selected, account, api_version)
        lines = []
        for line in self._owned(selected, account):
            if line["LedgerEntryType"] != "RippleState":
                continue
            side = trustlines.side_of(line, account)
            other = trustlines.HIGH if side is trustlines.LOW else trustlines.LOW
            peer = line[other.limit_field]["issuer"]
            if peer_filter is not None and peer != peer_filter:
                continue
            flags = int(line.get("Flags", 0))
            entry: JsonObject = {
                "account": peer,
                "balance": text(trustlines.balance_of(line, account)),
                "currency": line["Balance"]["currency"],
                "limit": line[side.limit_field]["value"],
                "limit_peer": line[other.limit_field]["value"],
                "quality_in": 0,
                "quality_out": 0,
            }
            if flags & side.no_ripple:
                entry["no_ripple"] = True
            if flags & other.no_ripple:
                entry["no_ripple_peer"] = True
            entry.update(trustlines.control_fields(line, account))
            lines.append(entry)
        return {"account": account, "lines": lines} | selected.fields(api_version)

    def _m_account_tx(self, params: JsonObject, api_version: int) -> JsonObject:
        account = self._account_param(params)
        chain = self.chain
        lowest = chain.first_sequence
        highest = chain.last_closed.header.sequence
        min_index = int(params.get("ledger_index_min", -1))
        max_index = int(params.get("ledger_index_max", -1))
        if "ledger_index" in params or "ledger_hash" in params:
            selected = self._select(params, default="validated")
            min_index = max_index = selected.sequence
        min_index = lowest if min_index == -1 else min_index
        max_index = highest if max_index == -1 else max_index
        if min_index > max_index:
            raise RpcError("lgrIdxMalformed")
        if min_index < lowest or max_index > highest:
            raise RpcError("lgrNotFound")
        records = [
            r
            for r in chain.account_transactions(account)
            if min_index <= r.ledger_sequence <= max_index
        ]
        forward = bool(params.get("forward", False))
        if not forward:
            records.reverse()
        start = 0
        marker = params.get("marker")
        if isinstance(marker, dict) and "seq" in marker:
            start = int(marker["seq"])
        limit = max(1, min(int(params.get("limit", 200)), 400))
        page = records[start : start + limit]
        result: JsonObject = {
            "account": account,
            "ledger_index_max": max_index,
            "ledger_index_min": min_index,
            "limit": limit,
            "transactions": [
                self._tx_entry(
                    r,
                    api_version,
                    bool(params.get("binary")),
                    validated=True,
                    in_ledger=False,
                    nested=True,
                )
                for r in page
            ],
            "validated": True,
        }
        if start + limit < len(records):
            result["marker"] = {"ledger": page[-1].ledger_sequence, "seq": start + limit}
        return result

    def _m_deposit_authorized(self, params: JsonObject, api_version: int) -> JsonObject:
        """DepositAuthorized.cpp: may source pay destination, given its DepositAuth?"""
        source = self._account_param(params, "source_account", string_checked=True)
        destination = self._account_param(params, "destination_account", string_checked=True)
        if "credentials" in params:
            # No Credential objects exist on this node (Credentials is not built).
            raise RpcError("invalidParams", "Invalid field 'credentials'.")
        selected = self._select(params)
        fields = selected.fields(api_version)
        if selected.state.read(hashing.account_index(source)) is None:
            raise RpcError("srcActNotFound", **fields)
        root = selected.state.read(hashing.account_index(destination))
        if root is None:
            raise RpcError("dstActNotFound", **fields)
        # The ledger's own rule, so the answer and what a payment meets cannot drift.
        verdict = verify_deposit_preauth(ApplyView(selected.state), source, root)
        return {
            "deposit_authorized": verdict == "tesSUCCESS",
            "destination_account": destination,
            "source_account": source,
        } | fields

    def _m_ledger_entry(self, params: JsonObject, api_version: int) -> JsonObject:
        selected = self._select(params, default="validated")
        index = self._entry_index(params)
        data = selected.state.read(index)
        if data is None:
            raise RpcError("entryNotFound", **selected.fields(api_version))
        return {"index": index, "node": data | {"index": index}} | selected.fields(api_version)

    def _entry_index(self, params: JsonObject) -> str:
        try:
            if "index" in params:
                return str(params["index"]).upper()
            if "account_root" in params:
                return hashing.account_index(str(params["account_root"]))
            if "escrow" in params:
                spec = params["escrow"]
                if isinstance(spec, str):
                    return spec.upper()
                return hashing.escrow_index(str(spec["owner"]), int(spec["seq"]))
            if "ticket" in params:
                spec = params["ticket"]
                if isinstance(spec, str):
                    return spec.upper()
                return hashing.ticket_index(str(spec["account"]), int(spec["ticket_seq"]))
            if "deposit_preauth" in params:
                spec = params["deposit_preauth"]
                if isinstance(spec, str):
                    return spec.upper()
                owner, authorized = str(spec["owner"]), str(spec["authorized"])
                if not (is_valid_classic_address(owner) and is_valid_classic_address(authorized)):
                    raise RpcError("invalidParams", "malformedAddress")
                return hashing.deposit_preauth_index(owner, authorized)
            if "ripple_state" in params:
                spec = params["ripple_state"]
                a, b = spec["accounts"]
                return hashing.trust_line_index(str(a), str(b), str(spec["currency"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise RpcError("invalidParams", "malformedRequest") from exc
        raise RpcError("invalidParams", "No ledger_entry params provided.")

    # --- transactions ---------------------------------------------------------------

    def _m_submit(self, params: JsonObject, api_version: int) -> JsonObject:
        blob = params.get("tx_blob")
        if not isinstance(blob, str):
            raise RpcError("invalidParams", "Missing field 'tx_blob'.")
        chain = self.node.chain  # submits always reach the fresh server
        rejection = self.node.faults.take_rejection()
        try:
            if rejection is not None:
                tx_json, raw = chain.decode_blob(blob)
                outcome = SubmitResult(
                    rejection.code, tx_json, hashing.transaction_id(raw), applied=False, kept=False
                )
            else:
                outcome = chain.submit(blob)
        except InvalidTransaction as exc:
            return {
                "error": "invalidTransaction",
                "error_exception": str(exc),
                "request": {**params, "command": "submit"},
                "status": "error",
            }
        tx_json = with_deliver_max(outcome.tx_json, api_version) | {"hash": outcome.tx_hash}
        root = chain.open_state.read(hashing.account_index(str(tx_json["Account"])))
        next_sequence = int(root["Sequence"]) if root is not None else 0
        available = chain.queue.next_sequence(str(tx_json["Account"]), next_sequence)
        return {
            "accepted": outcome.applied or outcome.kept,
            "account_sequence_available": available,
            "account_sequence_next": next_sequence,
            "applied": outcome.applied,
            "broadcast": outcome.applied,
            "engine_result": outcome.engine_result,
            "engine_result_code": codes.code_of(outcome.engine_result),
            "engine_result_message": codes.message_of(outcome.engine_result),
            "kept": outcome.kept,
            "open_ledger_cost": str(chain.open_ledger_fee_drops()),
            "queued": outcome.queued,
            "tx_blob": blob.upper(),
            "tx_json": tx_json,
            "validated_ledger_index": chain.last_closed.header.sequence,
        }

    def _m_tx(self, params: JsonObject, api_version: int) -> JsonObject:
        """Tx.cpp: by hash or CTID; with min_ledger/max_ledger a miss says searched_all."""
        if "transaction" in params and "ctid" in params:
            raise RpcError("invalidParams")
        searched = self._tx_range(params)
        if "ctid" in params:
            record = self._by_ctid(str(params["ctid"]))
        elif "transaction" in params:
            tx_hash = params["transaction"]
            if not isinstance(tx_hash, str) or not _is_hash256(tx_hash):
                raise RpcError("notImpl")
            record = self.chain.transaction(tx_hash)
        else:
            raise RpcError("invalidParams")
        if record is None:
            if searched is None:
                raise RpcError("txnNotFound")
            raise RpcError("txnNotFound", searched_all=self._has_every_ledger(*searched))
        validated = self.chain.is_closed(record)
        return self._tx_entry(
            record, api_version, bool(params.get("binary")), validated=validated, in_ledger=False
        )

    @staticmethod
    def _tx_range(params: JsonObject) -> tuple[int, int] | None:
        if "min_ledger" not in params or "max_ledger" not in params:
            return None
        low, high = params["min_ledger"], params["max_ledger"]
        if not (_is_uint32(low) and _is_uint32(high)):
            raise RpcError("invalidLgrRange")
        low, high = int(low), int(high)
        if high < low:
            raise RpcError("invalidLgrRange")
        if high - low > MAX_TX_RANGE:
            raise RpcError("excessiveLgrRange")
        return low, high

    def _has_every_ledger(self, low: int, high: int) -> bool:
        """Whether this server holds every validated ledger of the range (complete_ledgers)."""
        return self.chain.first_sequence <= low and high <= self.chain.last_closed.header.sequence

    def _m_tx_history(self, params: JsonObject, api_version: int) -> JsonObject:
        """TxHistory.cpp (API v1 only): 20 validated transactions, newest first, from
        ``start``. The admin port is unlimited, so no start is refused for its size."""
        if api_version > 1:
            raise RpcError("unknownCmd")  # Handlers.cpp: tx_history ends with API v1
        if "start" not in params:
            raise RpcError("invalidParams")
        start = params["start"]
        if not _is_uint32(start):
            raise RpcError("invalidParams", "Invalid field 'start'.")
        start = int(start)
        txs: list[JsonObject] = []
        sequence = self.chain.last_closed.header.sequence
        skipped = 0
        while sequence >= self.chain.first_sequence and len(txs) < TX_HISTORY_PAGE:
            ledger = self.chain.ledger(sequence)
            assert ledger is not None
            for record in reversed(self.chain.ledger_transactions(ledger)):
                if skipped < start:
                    skipped += 1
                elif len(txs) < TX_HISTORY_PAGE:
                    txs.append(
                        with_deliver_max(record.tx_json, api_version)
                        | {
                            "hash": record.hash,
                            "inLedger": record.ledger_sequence,
                            "ledger_index": record.ledger_sequence,
                        }
                    )
            sequence -= 1
        return {"index": start, "txs": txs}

    def _by_ctid(self, ctid: str) -> TxRecord | None:
        if len(ctid) != 16 or not ctid.upper().startswith("C"):
            raise RpcError("invalidParams", "Invalid field 'ctid'.")
        try:
            value = int(ctid[1:], 16)
        except ValueError as exc:
            raise RpcError("invalidParams", "Invalid field 'ctid'.") from exc
        sequence, index, network = value >> 32, (value >> 16) & 0xFFFF, value & 0xFFFF
        if network != self.chain.network_id:
            raise RpcError(
                "wrongNetwork",
                "Wrong network. You should submit this request to a node running on "
                f"NetworkID: {network}",
            )
        ledger = self.chain.ledger(sequence)
        if ledger is None or index >= len(ledger.tx_hashes):
            return None
        return self.chain.transaction(ledger.tx_hashes[index])

    def _tx_entry(
        self,
        record: TxRecord,
        api_version: int,
        binary: bool,
        *,
        validated: bool,
        in_ledger: bool,
        nested: bool = False,
    ) -> JsonObject:
        """A transaction as tx, account_tx and ledger (expanded) present it.

        ``nested``: account_tx's API v1 shape, the transaction under ``tx`` beside
        ``meta`` (AccountTx.cpp); tx and ledger put its fields at the top in v1.
        """
        if binary:
            return self._tx_entry_binary(record, api_version, validated=validated, nested=nested)
        entry: JsonObject = {"hash": record.hash}
        if validated:
            entry |= self._ledger_fields(record)
        meta = self._meta_json(record, validated)
        tx_json = with_deliver_max(record.tx_json, api_version)
        if api_version > 1:
            entry["tx_json"] = tx_json
            if validated:
                entry["meta"] = meta
        elif nested:
            entry = {"tx": {**tx_json, **entry}}
            if validated:
                entry["tx"] |= {"inLedger": record.ledger_sequence, "date": self._date(record)}
                entry["meta"] = meta
        else:
            entry |= tx_json
            if validated:
                entry["meta" if not in_ledger else "metaData"] = meta
                entry["inLedger"] = record.ledger_sequence
                entry["date"] = self._date(record)
        entry["validated"] = validated
        return entry

    def _tx_entry_binary(
        self, record: TxRecord, api_version: int, *, validated: bool, nested: bool
    ) -> JsonObject:
        entry: JsonObject = {"tx_blob": record.blob}
        if nested:
            # account_tx: the metadata blob is "meta" in v1 and "meta_blob" in v2
            entry["meta" if api_version == 1 else "meta_blob"] = encode(record.meta)
            entry["ledger_index"] = record.ledger_sequence
        else:
            entry["hash"] = record.hash
            if validated:
                entry |= self._ledger_fields(record)
                entry["meta_blob"] = encode(record.meta)
        entry["validated"] = validated
        return entry

    def _ledger_fields(self, record: TxRecord) -> JsonObject:
        ledger = self.chain.ledger(record.ledger_sequence)
        assert ledger is not None
        fields: JsonObject = {
            "ledger_index": record.ledger_sequence,
            "ledger_hash": ledger.header.hash,
            "close_time_iso": close_time_iso(ledger.header.close_time),
        }
        index = int(record.meta["TransactionIndex"])
        if record.ledger_sequence < 0x0FFFFFFF and self.chain.network_id < 0xFFFF:
            fields["ctid"] = f"C{record.ledger_sequence:07X}{index:04X}{self.chain.network_id:04X}"
        return fields

    def _date(self, record: TxRecord) -> int:
        ledger = self.chain.ledger(record.ledger_sequence)
        assert ledger is not None
        return ledger.header.close_time

    @staticmethod
    def _meta_json(record: TxRecord, validated: bool) -> JsonObject:
        meta = dict(record.meta)
        if record.tx_json.get("TransactionType") == "Payment" and validated:
            meta["delivered_amount"] = (
                record.delivered
                if record.delivered is not None
                else amount_to_json(0)
                if record.result != "tesSUCCESS"
                else "unavailable"
            )
        return meta

    # --- admin: faults and time -------------------------------------------------------

    def _m_localnet_faults(self, params: JsonObject, api_version: int) -> JsonObject:
        """Admin: inject faults. ``action`` is one of the FaultPlan operations."""
        faults = self.node.faults
        action = params.get("action")
        try:
            if action == "drop_submit_responses":
                faults.drop_submit_responses(int(params.get("count", 1)))
            elif action == "reject_submits":
                faults.reject_submits(int(params.get("count", 1)), str(params["code"]))
            elif action == "delay_responses":
                count = params.get("count")
                faults.delay_responses(
                    float(params["seconds"]), int(count) if count is not None else None
                )
            elif action == "partition":
                faults.partition(float(params["seconds"]))
            elif action == "stall_closing":
                faults.stall_closing()
            elif action == "resume_closing":
                faults.resume_closing()
            elif action == "lagging_server":
                faults.lagging_server(
                    _strict_int(params["ledgers_behind"]), _share(params.get("share", 1))
                )
            elif action == "advance_time":
                self.node.advance_time(int(params["seconds"]))
            elif action == "clear":
                faults.clear()
            elif action != "status":
                raise RpcError("invalidParams", f"Unknown fault action {action!r}.")
        except (KeyError, TypeError, ValueError) as exc:
            raise RpcError("invalidParams", str(exc)) from exc
        return {"faults": faults.describe(), "clock_offset_s": self.chain.clock.offset_s}
