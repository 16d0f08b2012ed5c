"""Issuer flags and trust line authorisation: the rules by which an issuer can make a
payout fail after a DVP lock is in place (issue 21).

Each test names the stellar-core code path its expectations were checked against.
"""

from __future__ import annotations

from decimal import Decimal

from stellar_sdk import (
    Asset,
    Claimant,
    ClaimPredicate,
    Keypair,
    Server,
    Signer,
    TrustLineEntryFlag,
    TrustLineFlags,
)
from stellar_sdk import xdr as x
from stellar_sdk.transaction_envelope import TransactionEnvelope

from adapters.localnet.stellar import StellarNode
from tests.adapters.localnet.stellar.helpers import (
    build,
    credit_balance,
    failure_codes,
    sequence,
    sign_all,
)
from tests.adapters.localnet.stellar.issuers import (
    AUTHORIZED,
    CLAWBACK,
    IMMUTABLE,
    LINE_CLAWBACK,
    MAINTAIN,
    REQUIRED,
    REVOCABLE,
    Fund,
    allow_trust,
    authorize,
    line_of,
    pay,
    raw_op_codes,
    set_issuer_flags,
    submit,
    trust,
)


def _flags_op(
    server: Server,
    node: StellarNode,
    issuer: Keypair,
    holder: str,
    asset: Asset,
    *,
    clear_flags: TrustLineFlags | None = None,
    set_flags: TrustLineFlags | None = None,
) -> TransactionEnvelope:
    builder = build(server, node, issuer).append_set_trust_line_flags_op(
        holder, asset, clear_flags=clear_flags, set_flags=set_flags
    )
    return sign_all(builder.build(), issuer)


def test_set_options_issuer_flag_rules(server: Server, node: StellarNode, fund: Fund) -> None:
    # SetOptionsOpFrame::doCheckValid (UNKNOWN_FLAG, BAD_FLAGS) and doApply
    # (CANT_CHANGE once AUTH_IMMUTABLE; AUTH_REVOCABLE_REQUIRED for clawback).
    issuer = fund()
    before = sequence(server, issuer.public_key)
    unknown = raw_op_codes(
        server,
        node,
        issuer,
        x.OperationBody(
            x.OperationType.SET_OPTIONS,
            set_options_op=x.SetOptionsOp(
                None, None, x.Uint32(0x10), None, None, None, None, None, None
            ),
        ),
    )
    assert unknown["operations"] == ["op_unknown_flag"]
    both = sign_all(
        build(server, node, issuer)
        .append_set_options_op(set_flags=REQUIRED, clear_flags=REQUIRED)
        .build(),
        issuer,
    )
    assert failure_codes(server, both)["operations"] == ["op_bad_flags"]
    assert sequence(server, issuer.public_key) == before  # refused before a ledger

    set_issuer_flags(server, node, issuer, REVOCABLE | CLAWBACK)
    # Revocable cannot go while clawback stays.
    drop_revocable = sign_all(
        build(server, node, issuer).append_set_options_op(clear_flags=REVOCABLE).build(), issuer
    )
    assert failure_codes(server, drop_revocable)["operations"] == ["op_auth_revocable_required"]

    set_issuer_flags(server, node, issuer, REQUIRED | IMMUTABLE)
    flags = server.accounts().account_id(issuer.public_key).call()["flags"]
    assert flags == {
        "auth_required": True,
        "auth_revocable": True,
        "auth_immutable": True,
        "auth_clawback_enabled": True,
    }
    for clear, set_ in ((REQUIRED, None), (None, REQUIRED)):
        frozen = sign_all(
            build(server, node, issuer)
            .append_set_options_op(clear_flags=clear, set_flags=set_)
            .build(),
            issuer,
        )
        assert failure_codes(server, frozen)["operations"] == ["op_cant_change"]


def test_auth_required_line_starts_unauthorised_until_the_issuer_authorises(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    # ChangeTrustOpFrame::doApply (new line flags), SetTrustLineFlagsOpFrame,
    # PathPaymentOpFrameBase::updateDestBalance (NOT_AUTHORIZED).
    issuer, holder = fund(), fund()
    set_issuer_flags(server, node, issuer, REQUIRED | REVOCABLE)
    usd = Asset("USD", issuer.public_key)
    trust(server, node, holder, usd)
    line = line_of(server, holder.public_key, usd)
    assert line is not None
    assert (line["is_authorized"], line["is_authorized_to_maintain_liabilities"]) == (False, False)
    blocked = sign_all(
        build(server, node, issuer).append_payment_op(holder.public_key, usd, "5").build(), issuer
    )
    assert failure_codes(server, blocked)["operations"] == ["op_not_authorized"]

    authorize(server, node, issuer, holder.public_key, usd)
    pay(server, node, issuer, holder.public_key, usd, "5")
    line = line_of(server, holder.public_key, usd)
    assert line is not None and line["is_authorized"] is True
    assert credit_balance(server, holder.public_key, usd) == Decimal("5")


def test_maintain_liabilities_line_can_neither_send_nor_receive(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    # PathPaymentOpFrameBase::updateSourceBalance / updateDestBalance use isAuthorized
    # (full authorisation), so a line only authorised to maintain liabilities is frozen.
    issuer, holder, other = fund(), fund(), fund()
    set_issuer_flags(server, node, issuer, REVOCABLE)
    usd = Asset("USD", issuer.public_key)
    trust(server, node, holder, usd)
    trust(server, node, other, usd)
    pay(server, node, issuer, holder.public_key, usd, "50")

    submit(
        server,
        node,
        issuer,
        lambda b: b.append_set_trust_line_flags_op(
            holder.public_key, usd, clear_flags=AUTHORIZED, set_flags=MAINTAIN
        ),
    )
    line = line_of(server, holder.public_key, usd)
    assert line is not None
    assert (line["is_authorized"], line["is_authorized_to_maintain_liabilities"]) == (False, True)

    send = sign_all(
        build(server, node, holder).append_payment_op(other.public_key, usd, "1").build(), holder
    )
    assert failure_codes(server, send)["operations"] == ["op_src_not_authorized"]
    # Paying the issuer back is no exception for the holder's own line.
    repay = sign_all(
        build(server, node, holder).append_payment_op(issuer.public_key, usd, "1").build(), holder
    )
    assert failure_codes(server, repay)["operations"] == ["op_src_not_authorized"]
    receive = sign_all(
        build(server, node, issuer).append_payment_op(holder.public_key, usd, "1").build(), issuer
    )
    assert failure_codes(server, receive)["operations"] == ["op_not_authorized"]
    assert credit_balance(server, holder.public_key, usd) == Decimal("50")

    # Fully revoked, then re-authorised: the balance was held all along.
    submit(
        server,
        node,
        issuer,
        lambda b: b.append_set_trust_line_flags_op(holder.public_key, usd, clear_flags=MAINTAIN),
    )
    line = line_of(server, holder.public_key, usd)
    assert line is not None
    assert (line["is_authorized"], line["is_authorized_to_maintain_liabilities"]) == (False, False)
    authorize(server, node, issuer, holder.public_key, usd)
    pay(server, node, holder, other.public_key, usd, "20")
    assert credit_balance(server, other.public_key, usd) == Decimal("20")


def test_revocation_needs_auth_revocable(server: Server, node: StellarNode, fund: Fund) -> None:
    # SetTrustLineFlagsOpFrame::isAuthRevocationValid and AllowTrustOpFrame's
    # isAuthRevocationValid / isRevocationToMaintainLiabilitiesValid (CANT_REVOKE).
    issuer, holder = fund(), fund()
    usd = Asset("USD", issuer.public_key)
    trust(server, node, holder, usd)
    pay(server, node, issuer, holder.public_key, usd, "10")
    revoke = _flags_op(server, node, issuer, holder.public_key, usd, clear_flags=AUTHORIZED)
    assert failure_codes(server, revoke)["operations"] == ["op_cant_revoke"]
    to_maintain = _flags_op(
        server, node, issuer, holder.public_key, usd, clear_flags=AUTHORIZED, set_flags=MAINTAIN
    )
    assert failure_codes(server, to_maintain)["operations"] == ["op_cant_revoke"]
    allow_zero = sign_all(
        allow_trust(build(server, node, issuer), holder.public_key, "USD", False).build(),
        issuer,
    )
    assert failure_codes(server, allow_zero)["operations"] == ["op_cant_revoke"]
    allow_maintain = sign_all(
        allow_trust(
            build(server, node, issuer),
            holder.public_key,
            "USD",
            TrustLineEntryFlag.AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG,
        ).build(),
        issuer,
    )
    assert failure_codes(server, allow_maintain)["operations"] == ["op_cant_revoke"]
    line = line_of(server, holder.public_key, usd)
    assert line is not None and line["is_authorized"] is True


def test_set_trust_line_flags_state_and_missing_line(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    # SetTrustLineFlagsOpFrame::calcExpectedFlagValue (INVALID_STATE) and
    # TrustFlagsOpFrameBase::doApply (NO_TRUST_LINE, also for an account that does not exist).
    issuer, holder, stranger = fund(), fund(), fund()
    set_issuer_flags(server, node, issuer, REVOCABLE)
    usd = Asset("USD", issuer.public_key)
    trust(server, node, holder, usd)
    both = _flags_op(server, node, issuer, holder.public_key, usd, set_flags=MAINTAIN)
    assert failure_codes(server, both)["operations"] == ["op_invalid_state"]
    for trustor in (stranger.public_key, Keypair.random().public_key):
        missing = _flags_op(server, node, issuer, trustor, usd, set_flags=AUTHORIZED)
        assert failure_codes(server, missing)["operations"] == ["op_no_trust"]
    allow_missing = sign_all(
        allow_trust(build(server, node, issuer), stranger.public_key, "USD", True).build(),
        issuer,
    )
    assert failure_codes(server, allow_missing)["operations"] == ["op_no_trust"]


def test_allow_trust_sets_the_authorisation_state(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    # AllowTrustOpFrame::calcExpectedFlagValue: authorize replaces both auth flags.
    issuer, holder = fund(), fund()
    set_issuer_flags(server, node, issuer, REQUIRED | REVOCABLE)
    eur = Asset("EURO1", issuer.public_key)  # alphanum12: AllowTrust names a 12-byte code
    trust(server, node, holder, eur)
    states = []
    maintain = TrustLineEntryFlag.AUTHORIZED_TO_MAINTAIN_LIABILITIES_FLAG
    for authorize_to in (True, maintain, False, TrustLineEntryFlag.AUTHORIZED_FLAG):
        submit(
            server,
            node,
            issuer,
            lambda b, a=authorize_to: allow_trust(b, holder.public_key, "EURO1", a),
        )
        line = line_of(server, holder.public_key, eur)
        assert line is not None
        states.append((line["is_authorized"], line["is_authorized_to_maintain_liabilities"]))
    # Horizon shows is_authorized_to_maintain_liabilities for full authorisation too.
    assert states == [(True, True), (False, True), (False, False), (True, True)]


def test_trust_flag_operations_are_low_threshold(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    # TrustFlagsOpFrameBase::getThresholdLevel is LOW; ClawbackOpFrame keeps
    # OperationFrame's MEDIUM default.
    issuer, holder, clerk = fund(), fund(), fund()
    set_issuer_flags(server, node, issuer, REVOCABLE | CLAWBACK)
    usd = Asset("USD", issuer.public_key)
    trust(server, node, holder, usd)
    pay(server, node, issuer, holder.public_key, usd, "10")
    submit(
        server,
        node,
        issuer,
        lambda b: b.append_set_options_op(
            low_threshold=1,
            med_threshold=2,
            high_threshold=2,
            signer=Signer.ed25519_public_key(clerk.public_key, 1),
        ),
    )
    revoke = sign_all(
        build(server, node, issuer)
        .append_set_trust_line_flags_op(holder.public_key, usd, clear_flags=AUTHORIZED)
        .build(),
        clerk,
    )
    assert server.submit_transaction(revoke)["successful"] is True
    clawback = sign_all(
        build(server, node, issuer).append_clawback_op(usd, holder.public_key, "1").build(), clerk
    )
    assert failure_codes(server, clawback)["operations"] == ["op_bad_auth"]
    assert credit_balance(server, holder.public_key, usd) == Decimal("10")


def test_claimable_balances_follow_line_authorisation(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    # CreateClaimableBalanceOpFrame (NOT_AUTHORIZED from an unauthorised line),
    # ClaimClaimableBalanceOpFrame (NOT_AUTHORIZED, NO_TRUST, LINE_FULL); deauthorising
    # a claimant's line leaves the balance itself alone, as in core.
    issuer, sender, agent = fund(), fund(), fund()
    set_issuer_flags(server, node, issuer, REVOCABLE)
    usd = Asset("USD", issuer.public_key)
    trust(server, node, sender, usd)
    pay(server, node, issuer, sender.public_key, usd, "100")
    claimants = [Claimant(agent.public_key, ClaimPredicate.predicate_unconditional())]

    lock = sign_all(
        build(server, node, sender)
        .append_create_claimable_balance_op(usd, "30", claimants)
        .build(),
        sender,
    )
    balance_id = lock.transaction.get_claimable_balance_id(0)
    server.submit_transaction(lock)

    claim = sign_all(
        build(server, node, agent).append_claim_claimable_balance_op(balance_id).build(), agent
    )
    assert failure_codes(server, claim)["operations"] == ["op_no_trust"]
    trust(server, node, agent, usd, limit="10")
    claim = sign_all(
        build(server, node, agent).append_claim_claimable_balance_op(balance_id).build(), agent
    )
    assert failure_codes(server, claim)["operations"] == ["op_line_full"]
    trust(server, node, agent, usd, limit="1000")
    submit(
        server,
        node,
        issuer,
        lambda b: b.append_set_trust_line_flags_op(
            agent.public_key, usd, clear_flags=AUTHORIZED, set_flags=MAINTAIN
        ),
    )
    claim = sign_all(
        build(server, node, agent).append_claim_claimable_balance_op(balance_id).build(), agent
    )
    assert failure_codes(server, claim)["operations"] == ["op_not_authorized"]
    assert server.claimable_balances().claimable_balance(balance_id).call()["amount"] == (
        "30.0000000"
    )

    submit(
        server,
        node,
        issuer,
        lambda b: b.append_set_trust_line_flags_op(sender.public_key, usd, clear_flags=AUTHORIZED),
    )
    frozen_lock = sign_all(
        build(server, node, sender).append_create_claimable_balance_op(usd, "1", claimants).build(),
        sender,
    )
    assert failure_codes(server, frozen_lock)["operations"] == ["op_not_authorized"]

    # Back to full authorisation: MAINTAIN must be cleared in the same step, or the line
    # would hold both auth flags (INVALID_STATE).
    submit(
        server,
        node,
        issuer,
        lambda b: b.append_set_trust_line_flags_op(
            agent.public_key, usd, clear_flags=MAINTAIN, set_flags=AUTHORIZED
        ),
    )
    submit(server, node, agent, lambda b: b.append_claim_claimable_balance_op(balance_id))
    assert credit_balance(server, agent.public_key, usd) == Decimal("30")


def test_deauthorised_line_can_be_removed_only_when_empty(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    # ChangeTrustOpFrame::doApply: the limit may not drop below the balance, whatever
    # the line's authorisation; an empty line can always be removed.
    issuer, holder, other = fund(), fund(), fund()
    set_issuer_flags(server, node, issuer, REVOCABLE)
    usd = Asset("USD", issuer.public_key)
    trust(server, node, holder, usd)
    trust(server, node, other, usd)
    pay(server, node, issuer, holder.public_key, usd, "5")
    for account in (holder, other):
        submit(
            server,
            node,
            issuer,
            lambda b, a=account: b.append_set_trust_line_flags_op(
                a.public_key, usd, clear_flags=AUTHORIZED
            ),
        )
    remove = sign_all(
        build(server, node, holder).append_change_trust_op(usd, limit="0").build(), holder
    )
    assert failure_codes(server, remove)["operations"] == ["op_invalid_limit"]
    lower = sign_all(
        build(server, node, holder).append_change_trust_op(usd, limit="4").build(), holder
    )
    assert failure_codes(server, lower)["operations"] == ["op_invalid_limit"]
    submit(server, node, other, lambda b: b.append_change_trust_op(usd, limit="0"))
    assert line_of(server, other.public_key, usd) is None


def test_new_lines_of_a_clawback_issuer_carry_the_clawback_flag(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    # ChangeTrustOpFrame::doApply sets TRUSTLINE_CLAWBACK_ENABLED_FLAG from the issuer;
    # SetTrustLineFlags may clear it (never set it).
    issuer, early, late = fund(), fund(), fund()
    usd = Asset("USD", issuer.public_key)
    trust(server, node, early, usd)
    set_issuer_flags(server, node, issuer, REVOCABLE | CLAWBACK)
    trust(server, node, late, usd)
    early_line, late_line = (line_of(server, k.public_key, usd) for k in (early, late))
    assert early_line is not None and early_line["is_clawback_enabled"] is False
    assert late_line is not None and late_line["is_clawback_enabled"] is True
    submit(
        server,
        node,
        issuer,
        lambda b: b.append_set_trust_line_flags_op(late.public_key, usd, clear_flags=LINE_CLAWBACK),
    )
    late_line = line_of(server, late.public_key, usd)
    assert late_line is not None and late_line["is_clawback_enabled"] is False
    assert late_line["is_authorized"] is True


def test_an_issuer_without_flags_behaves_as_before(
    server: Server, node: StellarNode, fund: Fund
) -> None:
    # The engine's default flow: no issuer flags, lines authorised at once, payments and
    # claimable balances between holders unaffected.
    issuer, holder, agent = fund(), fund(), fund()
    usd = Asset("USD", issuer.public_key)
    trust(server, node, holder, usd)
    trust(server, node, agent, usd)
    line = line_of(server, holder.public_key, usd)
    assert line is not None
    assert (
        line["is_authorized"],
        line["is_authorized_to_maintain_liabilities"],
        line["is_clawback_enabled"],
    ) == (True, True, False)
    pay(server, node, issuer, holder.public_key, usd, "10")
    pay(server, node, holder, agent.public_key, usd, "4")
    assert credit_balance(server, agent.public_key, usd) == Decimal("4")


def _stlf(trustor: str, asset: x.Asset, clear: int, set_: int) -> x.OperationBody:
    op = x.SetTrustLineFlagsOp(
        Keypair.from_public_key(trustor).xdr_account_id(), asset, x.Uint32(clear), x.Uint32(set_)
    )
    return x.OperationBody(x.OperationType.SET_TRUST_LINE_FLAGS, set_trust_line_flags_op=op)


def _allow(trustor: str, code: x.AssetCode, authorize: int) -> x.OperationBody:
    op = x.AllowTrustOp(
        Keypair.from_public_key(trustor).xdr_account_id(), code, x.Uint32(authorize)
    )
    return x.OperationBody(x.OperationType.ALLOW_TRUST, allow_trust_op=op)


def test_trust_flag_operations_malformed(server: Server, node: StellarNode, fund: Fund) -> None:
    # SetTrustLineFlagsOpFrame::doCheckValid and AllowTrustOpFrame::doCheckValid: each
    # refusal is MALFORMED, before a ledger, with no fee and no change.
    issuer, holder, other_issuer = fund(), fund(), fund()
    set_issuer_flags(server, node, issuer, REQUIRED | REVOCABLE)
    usd = Asset("USD", issuer.public_key)
    trust(server, node, holder, usd)
    own = usd.to_xdr_object()
    foreign = Asset("USD", other_issuer.public_key).to_xdr_object()
    native = Asset.native().to_xdr_object()
    bad_code = usd.to_xdr_object()
    assert bad_code.alpha_num4 is not None
    bad_code.alpha_num4.asset_code = x.AssetCode4(b"U$D\x00")
    h = holder.public_key
    bodies = [
        _stlf(h, native, 0, 1),
        _stlf(h, foreign, 0, 1),  # the source is not the asset's issuer
        _stlf(h, bad_code, 0, 1),
        _stlf(issuer.public_key, own, 0, 1),  # self as trustor
        _stlf(h, own, 1, 1),  # set and clear the same flag
        _stlf(h, own, 0, 3),  # both auth flags
        _stlf(h, own, 0, 4),  # clawback can only be cleared
        _stlf(h, own, 0, 8),  # no such trust line flag
        _stlf(h, own, 0x10, 0),
        _allow(
            h, x.AssetCode(x.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4, x.AssetCode4(b"USD\x00")), 3
        ),
        _allow(
            h,
            x.AssetCode(x.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4, x.AssetCode4(b"USD\x00")),
            2**32 - 1,
        ),
        _allow(
            issuer.public_key,
            x.AssetCode(x.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4, x.AssetCode4(b"USD\x00")),
            1,
        ),
        _allow(
            h, x.AssetCode(x.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4, x.AssetCode4(b"U$D\x00")), 1
        ),
        # alphanum12 codes are 5 to 12 characters
        _allow(
            h,
            x.AssetCode(
                x.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12,
                asset_code12=x.AssetCode12(b"USD".ljust(12, b"\x00")),
            ),
            1,
        ),
    ]
    before = sequence(server, issuer.public_key)
    for body in bodies:
        codes = raw_op_codes(server, node, issuer, body)
        assert codes == {"transaction": "tx_failed", "operations": ["op_malformed"]}, body
    assert sequence(server, issuer.public_key) == before
    line = line_of(server, holder.public_key, usd)
    assert line is not None and line["is_authorized"] is False

    # An operation source that does not exist is not the issuer: refused as MALFORMED
    # before a ledger (core checks operations before their sources exist, since an
    # earlier operation of the same transaction might create them).
    ghost = Keypair.random()
    missing = sign_all(
        build(server, node, issuer)
        .append_set_trust_line_flags_op(h, usd, set_flags=AUTHORIZED, source=ghost.public_key)
        .build(),
        issuer,
        ghost,
    )
    assert failure_codes(server, missing)["operations"] == ["op_malformed"]
