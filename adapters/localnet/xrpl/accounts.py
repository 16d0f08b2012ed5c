"""AccountRoot helpers shared by the transactors."""

from __future__ import annotations

from adapters.localnet.xrpl import hashing
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
