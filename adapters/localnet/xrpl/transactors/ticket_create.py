"""TicketCreate: reserve sequence numbers to use out of order (rippled's ``CreateTicket.cpp``)."""

from __future__ import annotations

from adapters.localnet.xrpl import hashing, protocol
from adapters.localnet.xrpl.accounts import adjust_owner_count, read_account, write_account
from adapters.localnet.xrpl.state import ApplyView, dir_insert
from adapters.localnet.xrpl.transactors.base import TES, ApplyContext, Transactor, Tx


class TicketCreate(Transactor):
    def preflight(self, tx: Tx) -> str:
        count = tx.get("TicketCount")
        if not isinstance(count, int) or not 1 <= count <= protocol.MAX_TICKETS_PER_TX:
            return "temINVALID_COUNT"
        return TES

    def do_apply(self, tx: Tx, view: ApplyView, actx: ApplyContext) -> str:
        count = int(tx["TicketCount"])
        account = read_account(view, tx.account)
        assert account is not None
        held = int(account.get("TicketCount", 0))
        if held + count > protocol.MAX_TICKETS_PER_ACCOUNT:
            return "tecDIR_FULL"
        owner_count = int(account.get("OwnerCount", 0))
        if actx.prior_balance_drops < actx.ctx.fees.account_reserve(owner_count + count):
            return "tecINSUFFICIENT_RESERVE"
        # The account's Sequence already moved past this transaction (or a ticket was
        # used), so the first ticket is the account's next sequence.
        first = int(account["Sequence"])
        for ticket_sequence in range(first, first + count):
            index = hashing.ticket_index(tx.account, ticket_sequence)
            view.write(
                index,
                {
                    "LedgerEntryType": "Ticket",
                    "Account": tx.account,
                    "Flags": 0,
                    "OwnerNode": dir_insert(view, tx.account, index),
                    "TicketSequence": ticket_sequence,
                },
            )
        account["Sequence"] = first + count
        account["TicketCount"] = held + count
        adjust_owner_count(account, count)
        write_account(view, account)
        return TES
