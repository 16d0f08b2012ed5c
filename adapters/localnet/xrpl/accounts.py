"""AccountRoot helpers shared by the transactors."""

from __future__ import annotations

from adapters.localnet.xrpl import hashing, protocol
from adapters.localnet.xrpl.state import ApplyView, JsonObject


def read_account(view: ApplyView, address: str) -> JsonObject | None:
    """The AccountRoot of ``address``, or None if it does not exist or is malformed."""
    try:
        return view.read(hashing.account_index(address))
    except ValueError:
        return None


def write_account(view: ApplyView, account: JsonObject) -> None:
    view.write(hashing.account_index(str(account["Account"])), account)


def adjust_owner_count(account: JsonObject, delta: int) -> None:
    count = int(account.get("OwnerCount", 0)) + delta
    assert count >= 0, "owner count would go negative"
    account["OwnerCount"] = count


def balance_drops(account: JsonObject) -> int:
    return int(account["Balance"])


def has_flag(account: JsonObject, flag: int) -> bool:
    return bool(int(account.get("Flags", 0)) & flag)


def transfer_rate(view: ApplyView, issuer: str) -> int:
    """The issuer's TransferRate in billionths (10^9 = no fee; rippled's ``transferRate``)."""
    root = read_account(view, issuer)
    if root is None:
        return protocol.TRANSFER_RATE_PARITY
    return int(root.get("TransferRate", protocol.TRANSFER_RATE_PARITY))


def verify_deposit_preauth(view: ApplyView, sender: str, destination: JsonObject) -> str:
    """rippled's ``verifyDepositPreauth``: may ``sender`` deliver funds to ``destination``?

    Only when the destination has DepositAuth does it matter: then the sender must be
    the destination itself or be preauthorised by it (a DepositPreauth object).
    """
    if not has_flag(destination, protocol.LSF_DEPOSIT_AUTH):
        return "tesSUCCESS"
    owner = str(destination["Account"])
    if sender == owner or view.exists(hashing.deposit_preauth_index(owner, sender)):
        return "tesSUCCESS"
    return "tecNO_PERMISSION"
