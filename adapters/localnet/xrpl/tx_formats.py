"""Which fields each transaction type must carry and may carry, as rippled's templates.

rippled builds an ``STTx`` from a submitted blob by applying the type's template
(``TxFormats.cpp`` common fields + the type's own in ``transactions.macro``;
``STObject::applyTemplate``). A field the template requires but the blob lacks, or a
field the template does not list, makes the blob no transaction at all: ``submit``
answers ``invalidTransaction`` with the template's message and nothing is applied. An
``soeDEFAULT`` field may be absent but may not be present with its default (empty)
value.

Only the types this node knows are listed; a type the node does not implement keeps
answering ``temDISABLED`` from the engine, as on a network without its amendment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final


class Style(Enum):
    REQUIRED = "required"
    OPTIONAL = "optional"
    DEFAULT = "default"  # optional, but never explicitly its default value


R, O, D = Style.REQUIRED, Style.OPTIONAL, Style.DEFAULT  # noqa: E741 - short, as the tables read


class TemplateError(ValueError):
    """The blob does not fit its type's template; the text is rippled's."""


# TxFormats::getCommonFields, in rippled's order.
COMMON_FIELDS: Final[Mapping[str, Style]] = {
    "TransactionType": R,
    "Flags": O,
    "SourceTag": O,
    "Account": R,
    "Sequence": R,
    "PreviousTxnID": O,
    "LastLedgerSequence": O,
    "AccountTxnID": O,
    "Fee": R,
    "OperationLimit": O,
    "Memos": O,
    "SigningPubKey": R,
    "TicketSequence": O,
    "TxnSignature": O,
    "Signers": O,
    "NetworkID": O,
    "Delegate": O,  # PermissionDelegation: the engine answers temDISABLED
}

# The types' own fields (transactions.macro).
TYPE_FIELDS: Final[Mapping[str, Mapping[str, Style]]] = {
    "Payment": {
        "Destination": R,
        "Amount": R,
        "SendMax": O,
        "Paths": D,
        "InvoiceID": O,
        "DestinationTag": O,
        "DeliverMin": O,
        "CredentialIDs": O,
        "DomainID": O,
    },
    "EscrowCreate": {
        "Destination": R,
        "Amount": R,
        "Condition": O,
        "CancelAfter": O,
        "FinishAfter": O,
        "DestinationTag": O,
    },
    "EscrowFinish": {
        "Owner": R,
        "OfferSequence": R,
        "Fulfillment": O,
        "Condition": O,
        "CredentialIDs": O,
    },
    "EscrowCancel": {"Owner": R, "OfferSequence": R},
    "AccountSet": {
        "EmailHash": O,
        "WalletLocator": O,
        "WalletSize": O,
        "MessageKey": O,
        "Domain": O,
        "TransferRate": O,
        "SetFlag": O,
        "ClearFlag": O,
        "TickSize": O,
        "NFTokenMinter": O,
    },
    "TicketCreate": {"TicketCount": R},
    "DepositPreauth": {
        "Authorize": O,
        "Unauthorize": O,
        "AuthorizeCredentials": O,
        "UnauthorizeCredentials": O,
    },
    "TrustSet": {"LimitAmount": O, "QualityIn": O, "QualityOut": O},
}


@dataclass(frozen=True)
class Template:
    fields: Mapping[str, Style]

    def check(self, tx_json: Mapping[str, Any]) -> None:
        """Raise ``TemplateError`` as ``applyTemplate`` throws, in its order."""
        for name, style in self.fields.items():
            if name in tx_json:
                if style is D and _is_default(tx_json[name]):
                    raise TemplateError(f"Field '{name}' may not be explicitly set to default.")
            elif style is R:
                raise TemplateError(f"Field '{name}' is required but missing.")
        for name in tx_json:
            if name not in self.fields:
                raise TemplateError(f"Field '{name}' found in disallowed location.")


# Each type's full template, merged once: every submitted transaction is checked.
_TEMPLATES: Final[Mapping[str, Template]] = {
    name: Template({**COMMON_FIELDS, **own}) for name, own in TYPE_FIELDS.items()
}


def template_for(transaction_type: str) -> Template | None:
    """The type's full template, or None for a type this node does not know."""
    return _TEMPLATES.get(transaction_type)


def _is_default(value: Any) -> bool:
    # The only soeDEFAULT field here is Paths, an array whose default is empty.
    return value in ([], "", 0, None)
