"""Transaction types this node applies, by ``TransactionType``.

Any other type is answered with ``temDISABLED``: as on a network where its amendment is
not enabled, it is refused before it can touch the ledger.
"""

from __future__ import annotations

from typing import Final

from adapters.localnet.xrpl.transactors.account_set import AccountSet
from adapters.localnet.xrpl.transactors.base import Transactor
from adapters.localnet.xrpl.transactors.deposit_preauth import DepositPreauth
from adapters.localnet.xrpl.transactors.escrow import EscrowCancel, EscrowCreate, EscrowFinish
from adapters.localnet.xrpl.transactors.payment import Payment
from adapters.localnet.xrpl.transactors.ticket_create import TicketCreate
from adapters.localnet.xrpl.transactors.trust_set import TrustSet

TRANSACTORS: Final[dict[str, Transactor]] = {
    "AccountSet": AccountSet(),
    "DepositPreauth": DepositPreauth(),
    "EscrowCancel": EscrowCancel(),
    "EscrowCreate": EscrowCreate(),
    "EscrowFinish": EscrowFinish(),
    "Payment": Payment(),
    "TicketCreate": TicketCreate(),
    "TrustSet": TrustSet(),
}
