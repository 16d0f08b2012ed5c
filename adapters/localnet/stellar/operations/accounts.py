"""Operations on accounts themselves: CreateAccount, AccountMerge, SetOptions, ManageData.

Each handler mirrors the order of checks in the matching stellar-core OpFrame, because
when several things are wrong the first failing check decides the result code.
"""

from __future__ import annotations

from dataclasses import replace

from stellar_sdk import xdr as x

from adapters.localnet.stellar.operations.base import (
    LedgerContext,
    OpContext,
    ThresholdLevel,
    add_native,
    available_balance,
    can_add_subentries,
    inner_result,
    is_string_valid,
    min_balance,
    outer_result,
)
from adapters.localnet.stellar.state import (
    ALL_ACCOUNT_FLAGS,
    AUTH_CLAWBACK_ENABLED_FLAG,
    AUTH_IMMUTABLE_FLAG,
    AUTH_REVOCABLE_FLAG,
    Account,
    DataEntry,
    Signer,
)
from adapters.localnet.stellar.xdrutil import (
    account_id_str,
    muxed_to_account_id,
    signer_key_raw,
    signer_key_str,
)

MAX_SIGNERS = 20
_CA = x.CreateAccountResultCode
_AM = x.AccountMergeResultCode
_SO = x.SetOptionsResultCode
_MD = x.ManageDataResultCode


def _starting_sequence(ledger: LedgerContext) -> int:
    """New accounts start at ledger_seq << 32, so a recreated account can never
    replay a transaction signed for its previous life."""
    return ledger.sequence << 32


class CreateAccount:
    op_type = x.OperationType.CREATE_ACCOUNT

    @staticmethod
    def _result(code: x.CreateAccountResultCode) -> x.OperationResult:
        return inner_result(x.OperationType.CREATE_ACCOUNT, x.CreateAccountResult(code))

    def threshold(self, body: x.OperationBody) -> ThresholdLevel:
        return ThresholdLevel.MEDIUM

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None:
        op = body.create_account_op
        assert op is not None
        if op.starting_balance.int64 < 0 or account_id_str(op.destination) == source:
            return self._result(_CA.CREATE_ACCOUNT_MALFORMED)
        return None

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult:
        op = body.create_account_op
        assert op is not None
        destination = account_id_str(op.destination)
        starting = op.starting_balance.int64
        if destination in ctx.entries.accounts:
            return self._result(_CA.CREATE_ACCOUNT_ALREADY_EXIST)
        new_account = Account(
            account_id=destination,
            balance=starting,
            seq_num=_starting_sequence(ctx.ledger),
            last_modified_ledger=ctx.ledger.sequence,
        )
        if starting < min_balance(new_account, ctx.ledger.base_reserve):
            return self._result(_CA.CREATE_ACCOUNT_LOW_RESERVE)
        source = ctx.source_account()
        if available_balance(source, ctx.ledger.base_reserve) < starting:
            return self._result(_CA.CREATE_ACCOUNT_UNDERFUNDED)
        debited = add_native(source, -starting, ctx.ledger.base_reserve)
        assert debited is not None
        ctx.entries.accounts[source.account_id] = debited
        ctx.entries.accounts[destination] = new_account
        return self._result(_CA.CREATE_ACCOUNT_SUCCESS)


class AccountMerge:
    op_type = x.OperationType.ACCOUNT_MERGE

    @staticmethod
    def _result(code: x.AccountMergeResultCode, balance: int | None = None) -> x.OperationResult:
        moved = None if balance is None else x.Int64(balance)
        return inner_result(x.OperationType.ACCOUNT_MERGE, x.AccountMergeResult(code, moved))

    def threshold(self, body: x.OperationBody) -> ThresholdLevel:
        return ThresholdLevel.HIGH

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None:
        assert body.destination is not None
        if muxed_to_account_id(body.destination) == source:
            return self._result(_AM.ACCOUNT_MERGE_MALFORMED)
        return None

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult:
        assert body.destination is not None
        destination = muxed_to_account_id(body.destination)
        if destination not in ctx.entries.accounts:
            return self._result(_AM.ACCOUNT_MERGE_NO_ACCOUNT)
        source = ctx.source_account()
        if source.flags & AUTH_IMMUTABLE_FLAG:
            return self._result(_AM.ACCOUNT_MERGE_IMMUTABLE_SET)
        # Signers are subentries too, but they are removed by the merge itself.
        if source.num_subentries != len(source.signers):
            return self._result(_AM.ACCOUNT_MERGE_HAS_SUB_ENTRIES)
        # Merging then recreating in the same ledger could replay old transactions.
        if source.seq_num >= _starting_sequence(ctx.ledger):
            return self._result(_AM.ACCOUNT_MERGE_SEQNUM_TOO_FAR)
        if source.num_sponsoring > 0:
            return self._result(_AM.ACCOUNT_MERGE_IS_SPONSOR)
        receiver = ctx.entries.accounts[destination]
        credited = add_native(receiver, source.balance, ctx.ledger.base_reserve)
        if credited is None:
            return self._result(_AM.ACCOUNT_MERGE_DEST_FULL)
        ctx.entries.accounts[destination] = credited
        del ctx.entries.accounts[source.account_id]
        return self._result(_AM.ACCOUNT_MERGE_SUCCESS, source.balance)


def _signer_sort_key(signer: Signer) -> tuple[int, bytes]:
    # stellar-core keeps signers ordered as SignerKey XDR compares: by type, then bytes.
    return ("GTX".index(signer.key[0]), signer_key_raw(signer.key))


class SetOptions:
    op_type = x.OperationType.SET_OPTIONS

    @staticmethod
    def _result(code: x.SetOptionsResultCode) -> x.OperationResult:
        return inner_result(x.OperationType.SET_OPTIONS, x.SetOptionsResult(code))

    def threshold(self, body: x.OperationBody) -> ThresholdLevel:
        op = body.set_options_op
        assert op is not None
        touches_auth = (
            op.master_weight is not None
            or op.low_threshold is not None
            or op.med_threshold is not None
            or op.high_threshold is not None
            or op.signer is not None
        )
        return ThresholdLevel.HIGH if touches_auth else ThresholdLevel.MEDIUM

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None:
        op = body.set_options_op
        assert op is not None
        set_flags = op.set_flags.uint32 if op.set_flags is not None else None
        clear_flags = op.clear_flags.uint32 if op.clear_flags is not None else None
        for flags in (set_flags, clear_flags):
            if flags is not None and flags & ~ALL_ACCOUNT_FLAGS:
                return self._result(_SO.SET_OPTIONS_UNKNOWN_FLAG)
        if set_flags is not None and clear_flags is not None and set_flags & clear_flags:
            return self._result(_SO.SET_OPTIONS_BAD_FLAGS)
        for value in (op.master_weight, op.low_threshold, op.med_threshold, op.high_threshold):
            if value is not None and value.uint32 > 255:
                return self._result(_SO.SET_OPTIONS_THRESHOLD_OUT_OF_RANGE)
        if op.signer is not None:
            key_type = op.signer.key.type
            if key_type == x.SignerKeyType.SIGNER_KEY_TYPE_ED25519_SIGNED_PAYLOAD:
                # Signed-payload signers (CAP-40) are not modelled by this node.
                return self._result(_SO.SET_OPTIONS_BAD_SIGNER)
            if signer_key_str(op.signer.key) == source or op.signer.weight.uint32 > 255:
                return self._result(_SO.SET_OPTIONS_BAD_SIGNER)
        if op.home_domain is not None and not is_string_valid(op.home_domain.string32):
            return self._result(_SO.SET_OPTIONS_INVALID_HOME_DOMAIN)
        return None

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult:
        op = body.set_options_op
        assert op is not None
        account = ctx.source_account()
        if op.inflation_dest is not None:
            inflation_dest = account_id_str(op.inflation_dest)
            if inflation_dest != account.account_id and inflation_dest not in ctx.entries.accounts:
                return self._result(_SO.SET_OPTIONS_INVALID_INFLATION)
        flags_or_error = self._new_flags(account, op)
        if isinstance(flags_or_error, x.OperationResult):
            return flags_or_error
        account = replace(account, flags=flags_or_error)
        if op.home_domain is not None:
            account = replace(account, home_domain=op.home_domain.string32.decode("ascii"))
        if op.master_weight is not None:
            account = replace(account, master_weight=op.master_weight.uint32)
        if op.low_threshold is not None:
            account = replace(account, low_threshold=op.low_threshold.uint32)
        if op.med_threshold is not None:
            account = replace(account, med_threshold=op.med_threshold.uint32)
        if op.high_threshold is not None:
            account = replace(account, high_threshold=op.high_threshold.uint32)
        if op.signer is not None:
            signed_or_error = self._with_signer(account, op.signer, ctx.ledger.base_reserve)
            if isinstance(signed_or_error, x.OperationResult):
                return signed_or_error
            account = signed_or_error
        ctx.entries.accounts[account.account_id] = account
        return self._result(_SO.SET_OPTIONS_SUCCESS)

    def _new_flags(self, account: Account, op: x.SetOptionsOp) -> int | x.OperationResult:
        """Clear, then set; auth flags are frozen once AUTH_IMMUTABLE is set."""
        immutable = bool(account.flags & AUTH_IMMUTABLE_FLAG)
        flags = account.flags
        if op.clear_flags is not None:
            if op.clear_flags.uint32 & ALL_ACCOUNT_FLAGS and immutable:
                return self._result(_SO.SET_OPTIONS_CANT_CHANGE)
            flags &= ~op.clear_flags.uint32
        if op.set_flags is not None:
            if op.set_flags.uint32 & ALL_ACCOUNT_FLAGS and immutable:
                return self._result(_SO.SET_OPTIONS_CANT_CHANGE)
            flags |= op.set_flags.uint32
        if flags & AUTH_CLAWBACK_ENABLED_FLAG and not flags & AUTH_REVOCABLE_FLAG:
            return self._result(_SO.SET_OPTIONS_AUTH_REVOCABLE_REQUIRED)
        return flags

    def _with_signer(
        self, account: Account, signer: x.Signer, base_reserve: int
    ) -> Account | x.OperationResult:
        """Weight 0 removes the signer; otherwise add it (one subentry) or change its weight."""
        key = signer_key_str(signer.key)
        weight = signer.weight.uint32
        others = tuple(s for s in account.signers if s.key != key)
        existing = len(others) != len(account.signers)
        if weight == 0:
            if not existing:
                return account
            return replace(account, signers=others, num_subentries=account.num_subentries - 1)
        updated = tuple(sorted((*others, Signer(key, weight)), key=_signer_sort_key))
        if existing:
            return replace(account, signers=updated)
        if len(account.signers) >= MAX_SIGNERS:
            return self._result(_SO.SET_OPTIONS_TOO_MANY_SIGNERS)
        problem = can_add_subentries(account, 1, base_reserve)
        if problem == "too_many_subentries":
            return outer_result(x.OperationResultCode.opTOO_MANY_SUBENTRIES)
        if problem == "low_reserve":
            return self._result(_SO.SET_OPTIONS_LOW_RESERVE)
        return replace(account, signers=updated, num_subentries=account.num_subentries + 1)


class ManageData:
    op_type = x.OperationType.MANAGE_DATA

    @staticmethod
    def _result(code: x.ManageDataResultCode) -> x.OperationResult:
        return inner_result(x.OperationType.MANAGE_DATA, x.ManageDataResult(code))

    def threshold(self, body: x.OperationBody) -> ThresholdLevel:
        return ThresholdLevel.MEDIUM

    def check_valid(self, body: x.OperationBody, source: str) -> x.OperationResult | None:
        op = body.manage_data_op
        assert op is not None
        name = op.data_name.string64
        if not name or not is_string_valid(name):
            return self._result(_MD.MANAGE_DATA_INVALID_NAME)
        return None

    def apply(self, ctx: OpContext, body: x.OperationBody) -> x.OperationResult:
        op = body.manage_data_op
        assert op is not None
        name = op.data_name.string64.decode("ascii")
        key = (ctx.source, name)
        existing = ctx.entries.data.get(key)
        account = ctx.source_account()
        if op.data_value is None:
            if existing is None:
                return self._result(_MD.MANAGE_DATA_NAME_NOT_FOUND)
            del ctx.entries.data[key]
            ctx.entries.accounts[ctx.source] = replace(
                account, num_subentries=account.num_subentries - 1
            )
            return self._result(_MD.MANAGE_DATA_SUCCESS)
        value = op.data_value.data_value
        if existing is not None:
            ctx.entries.data[key] = replace(
                existing, value=value, last_modified_ledger=ctx.ledger.sequence
            )
            return self._result(_MD.MANAGE_DATA_SUCCESS)
        problem = can_add_subentries(account, 1, ctx.ledger.base_reserve)
        if problem == "too_many_subentries":
            return outer_result(x.OperationResultCode.opTOO_MANY_SUBENTRIES)
        if problem == "low_reserve":
            return self._result(_MD.MANAGE_DATA_LOW_RESERVE)
        ctx.entries.data[key] = DataEntry(ctx.source, name, value, ctx.ledger.sequence)
        ctx.entries.accounts[ctx.source] = replace(
            account, num_subentries=account.num_subentries + 1
        )
        return self._result(_MD.MANAGE_DATA_SUCCESS)
