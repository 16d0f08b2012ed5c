"""Result codes as Horizon spells them in `extras.result_codes`.

The tables follow Horizon's internal/codes package (github.com/stellar/stellar-horizon),
including its irregular spellings ("op_already_exists", "op_seq_num_too_far",
"op_data_name_not_found", "tx_no_source_account").
"""

from __future__ import annotations

from stellar_sdk import xdr as x

T = x.TransactionResultCode
TX_CODE_NAMES: dict[x.TransactionResultCode, str] = {
    T.txFEE_BUMP_INNER_SUCCESS: "tx_fee_bump_inner_success",
    T.txFEE_BUMP_INNER_FAILED: "tx_fee_bump_inner_failed",
    T.txNOT_SUPPORTED: "tx_not_supported",
    T.txSUCCESS: "tx_success",
    T.txFAILED: "tx_failed",
    T.txTOO_EARLY: "tx_too_early",
    T.txTOO_LATE: "tx_too_late",
    T.txMISSING_OPERATION: "tx_missing_operation",
    T.txBAD_SEQ: "tx_bad_seq",
    T.txBAD_AUTH: "tx_bad_auth",
    T.txINSUFFICIENT_BALANCE: "tx_insufficient_balance",
    T.txNO_ACCOUNT: "tx_no_source_account",
    T.txINSUFFICIENT_FEE: "tx_insufficient_fee",
    T.txBAD_AUTH_EXTRA: "tx_bad_auth_extra",
    T.txINTERNAL_ERROR: "tx_internal_error",
    T.txBAD_SPONSORSHIP: "tx_bad_sponsorship",
    T.txBAD_MIN_SEQ_AGE_OR_GAP: "tx_bad_minseq_age_or_gap",
    T.txMALFORMED: "tx_malformed",
    T.txSOROBAN_INVALID: "tx_soroban_invalid",
}
TX_CODES_BY_NAME = {name: code for code, name in TX_CODE_NAMES.items()}

OP = x.OperationResultCode
OUTER_OP_CODE_NAMES: dict[x.OperationResultCode, str] = {
    OP.opINNER: "op_inner",
    OP.opBAD_AUTH: "op_bad_auth",
    OP.opNO_ACCOUNT: "op_no_source_account",
    OP.opNOT_SUPPORTED: "op_not_supported",
    OP.opTOO_MANY_SUBENTRIES: "op_too_many_subentries",
    OP.opEXCEEDED_WORK_LIMIT: "op_exceeded_work_limit",
    OP.opTOO_MANY_SPONSORING: "op_too_many_sponsoring",
}

_CA = x.CreateAccountResultCode
_PAY = x.PaymentResultCode
_SO = x.SetOptionsResultCode
_CT = x.ChangeTrustResultCode
_AM = x.AccountMergeResultCode
_MD = x.ManageDataResultCode
_CCB = x.CreateClaimableBalanceResultCode
_CLB = x.ClaimClaimableBalanceResultCode
_PPR = x.PathPaymentStrictReceiveResultCode
_PPS = x.PathPaymentStrictSendResultCode
_AT = x.AllowTrustResultCode
_STLF = x.SetTrustLineFlagsResultCode
_CB = x.ClawbackResultCode
_CBB = x.ClawbackClaimableBalanceResultCode
# Inner result codes per operation type. Keyed by type first: the XDR enums are
# IntEnums, so PAYMENT_UNDERFUNDED (-2) and CLAIM_..._CANNOT_CLAIM (-2) compare equal.
INNER_OP_CODE_NAMES: dict[x.OperationType, dict[int, str]] = {
    x.OperationType.CREATE_ACCOUNT: {
        _CA.CREATE_ACCOUNT_SUCCESS: "op_success",
        _CA.CREATE_ACCOUNT_MALFORMED: "op_malformed",
        _CA.CREATE_ACCOUNT_UNDERFUNDED: "op_underfunded",
        _CA.CREATE_ACCOUNT_LOW_RESERVE: "op_low_reserve",
        _CA.CREATE_ACCOUNT_ALREADY_EXIST: "op_already_exists",
    },
    x.OperationType.PAYMENT: {
        _PAY.PAYMENT_SUCCESS: "op_success",
        _PAY.PAYMENT_MALFORMED: "op_malformed",
        _PAY.PAYMENT_UNDERFUNDED: "op_underfunded",
        _PAY.PAYMENT_SRC_NO_TRUST: "op_src_no_trust",
        _PAY.PAYMENT_SRC_NOT_AUTHORIZED: "op_src_not_authorized",
        _PAY.PAYMENT_NO_DESTINATION: "op_no_destination",
        _PAY.PAYMENT_NO_TRUST: "op_no_trust",
        _PAY.PAYMENT_NOT_AUTHORIZED: "op_not_authorized",
        _PAY.PAYMENT_LINE_FULL: "op_line_full",
        _PAY.PAYMENT_NO_ISSUER: "op_no_issuer",
    },
    x.OperationType.SET_OPTIONS: {
        _SO.SET_OPTIONS_SUCCESS: "op_success",
        _SO.SET_OPTIONS_LOW_RESERVE: "op_low_reserve",
        _SO.SET_OPTIONS_TOO_MANY_SIGNERS: "op_too_many_signers",
        _SO.SET_OPTIONS_BAD_FLAGS: "op_bad_flags",
        _SO.SET_OPTIONS_INVALID_INFLATION: "op_invalid_inflation",
        _SO.SET_OPTIONS_CANT_CHANGE: "op_cant_change",
        _SO.SET_OPTIONS_UNKNOWN_FLAG: "op_unknown_flag",
        _SO.SET_OPTIONS_THRESHOLD_OUT_OF_RANGE: "op_threshold_out_of_range",
        _SO.SET_OPTIONS_BAD_SIGNER: "op_bad_signer",
        _SO.SET_OPTIONS_INVALID_HOME_DOMAIN: "op_invalid_home_domain",
        _SO.SET_OPTIONS_AUTH_REVOCABLE_REQUIRED: "op_auth_revocable_required",
    },
    x.OperationType.CHANGE_TRUST: {
        _CT.CHANGE_TRUST_SUCCESS: "op_success",
        _CT.CHANGE_TRUST_MALFORMED: "op_malformed",
        _CT.CHANGE_TRUST_NO_ISSUER: "op_no_issuer",
        _CT.CHANGE_TRUST_INVALID_LIMIT: "op_invalid_limit",
        _CT.CHANGE_TRUST_LOW_RESERVE: "op_low_reserve",
        _CT.CHANGE_TRUST_SELF_NOT_ALLOWED: "op_self_not_allowed",
        _CT.CHANGE_TRUST_TRUST_LINE_MISSING: "op_trust_line_missing",
        _CT.CHANGE_TRUST_CANNOT_DELETE: "op_cannot_delete",
        _CT.CHANGE_TRUST_NOT_AUTH_MAINTAIN_LIABILITIES: "op_not_aut_maintain_liabilities",
    },
    x.OperationType.ACCOUNT_MERGE: {
        _AM.ACCOUNT_MERGE_SUCCESS: "op_success",
        _AM.ACCOUNT_MERGE_MALFORMED: "op_malformed",
        _AM.ACCOUNT_MERGE_NO_ACCOUNT: "op_no_account",
        _AM.ACCOUNT_MERGE_IMMUTABLE_SET: "op_immutable_set",
        _AM.ACCOUNT_MERGE_HAS_SUB_ENTRIES: "op_has_sub_entries",
        _AM.ACCOUNT_MERGE_SEQNUM_TOO_FAR: "op_seq_num_too_far",
        _AM.ACCOUNT_MERGE_DEST_FULL: "op_dest_full",
        _AM.ACCOUNT_MERGE_IS_SPONSOR: "op_is_sponsor",
    },
    x.OperationType.MANAGE_DATA: {
        _MD.MANAGE_DATA_SUCCESS: "op_success",
        _MD.MANAGE_DATA_NOT_SUPPORTED_YET: "op_not_supported_yet",
        _MD.MANAGE_DATA_NAME_NOT_FOUND: "op_data_name_not_found",
        _MD.MANAGE_DATA_LOW_RESERVE: "op_low_reserve",
        _MD.MANAGE_DATA_INVALID_NAME: "op_data_invalid_name",
    },
    x.OperationType.CREATE_CLAIMABLE_BALANCE: {
        _CCB.CREATE_CLAIMABLE_BALANCE_SUCCESS: "op_success",
        _CCB.CREATE_CLAIMABLE_BALANCE_MALFORMED: "op_malformed",
        _CCB.CREATE_CLAIMABLE_BALANCE_LOW_RESERVE: "op_low_reserve",
        _CCB.CREATE_CLAIMABLE_BALANCE_NO_TRUST: "op_no_trust",
        _CCB.CREATE_CLAIMABLE_BALANCE_NOT_AUTHORIZED: "op_not_authorized",
        _CCB.CREATE_CLAIMABLE_BALANCE_UNDERFUNDED: "op_underfunded",
    },
    x.OperationType.CLAIM_CLAIMABLE_BALANCE: {
        _CLB.CLAIM_CLAIMABLE_BALANCE_SUCCESS: "op_success",
        _CLB.CLAIM_CLAIMABLE_BALANCE_DOES_NOT_EXIST: "op_does_not_exist",
        _CLB.CLAIM_CLAIMABLE_BALANCE_CANNOT_CLAIM: "op_cannot_claim",
        _CLB.CLAIM_CLAIMABLE_BALANCE_LINE_FULL: "op_line_full",
        _CLB.CLAIM_CLAIMABLE_BALANCE_NO_TRUST: "op_no_trust",
        _CLB.CLAIM_CLAIMABLE_BALANCE_NOT_AUTHORIZED: "op_not_authorized",
    },
    x.OperationType.PATH_PAYMENT_STRICT_RECEIVE: {
        _PPR.PATH_PAYMENT_STRICT_RECEIVE_SUCCESS: "op_success",
        _PPR.PATH_PAYMENT_STRICT_RECEIVE_MALFORMED: "op_malformed",
        _PPR.PATH_PAYMENT_STRICT_RECEIVE_UNDERFUNDED: "op_underfunded",
        _PPR.PATH_PAYMENT_STRICT_RECEIVE_SRC_NO_TRUST: "op_src_no_trust",
        _PPR.PATH_PAYMENT_STRICT_RECEIVE_SRC_NOT_AUTHORIZED: "op_src_not_authorized",
        _PPR.PATH_PAYMENT_STRICT_RECEIVE_NO_DESTINATION: "op_no_destination",
        _PPR.PATH_PAYMENT_STRICT_RECEIVE_NO_TRUST: "op_no_trust",
        _PPR.PATH_PAYMENT_STRICT_RECEIVE_NOT_AUTHORIZED: "op_not_authorized",
        _PPR.PATH_PAYMENT_STRICT_RECEIVE_LINE_FULL: "op_line_full",
        _PPR.PATH_PAYMENT_STRICT_RECEIVE_NO_ISSUER: "op_no_issuer",
        _PPR.PATH_PAYMENT_STRICT_RECEIVE_TOO_FEW_OFFERS: "op_too_few_offers",
        _PPR.PATH_PAYMENT_STRICT_RECEIVE_OFFER_CROSS_SELF: "op_cross_self",
        _PPR.PATH_PAYMENT_STRICT_RECEIVE_OVER_SENDMAX: "op_over_source_max",
    },
    x.OperationType.PATH_PAYMENT_STRICT_SEND: {
        _PPS.PATH_PAYMENT_STRICT_SEND_SUCCESS: "op_success",
        _PPS.PATH_PAYMENT_STRICT_SEND_MALFORMED: "op_malformed",
        _PPS.PATH_PAYMENT_STRICT_SEND_UNDERFUNDED: "op_underfunded",
        _PPS.PATH_PAYMENT_STRICT_SEND_SRC_NO_TRUST: "op_src_no_trust",
        _PPS.PATH_PAYMENT_STRICT_SEND_SRC_NOT_AUTHORIZED: "op_src_not_authorized",
        _PPS.PATH_PAYMENT_STRICT_SEND_NO_DESTINATION: "op_no_destination",
        _PPS.PATH_PAYMENT_STRICT_SEND_NO_TRUST: "op_no_trust",
        _PPS.PATH_PAYMENT_STRICT_SEND_NOT_AUTHORIZED: "op_not_authorized",
        _PPS.PATH_PAYMENT_STRICT_SEND_LINE_FULL: "op_line_full",
        _PPS.PATH_PAYMENT_STRICT_SEND_NO_ISSUER: "op_no_issuer",
        _PPS.PATH_PAYMENT_STRICT_SEND_TOO_FEW_OFFERS: "op_too_few_offers",
        _PPS.PATH_PAYMENT_STRICT_SEND_OFFER_CROSS_SELF: "op_cross_self",
        _PPS.PATH_PAYMENT_STRICT_SEND_UNDER_DESTMIN: "op_under_dest_min",
    },
    x.OperationType.ALLOW_TRUST: {
        _AT.ALLOW_TRUST_SUCCESS: "op_success",
        _AT.ALLOW_TRUST_MALFORMED: "op_malformed",
        _AT.ALLOW_TRUST_NO_TRUST_LINE: "op_no_trust",
        _AT.ALLOW_TRUST_TRUST_NOT_REQUIRED: "op_not_required",
        _AT.ALLOW_TRUST_CANT_REVOKE: "op_cant_revoke",
        _AT.ALLOW_TRUST_SELF_NOT_ALLOWED: "op_self_not_allowed",
        _AT.ALLOW_TRUST_LOW_RESERVE: "op_low_reserve",
    },
    x.OperationType.SET_TRUST_LINE_FLAGS: {
        _STLF.SET_TRUST_LINE_FLAGS_SUCCESS: "op_success",
        _STLF.SET_TRUST_LINE_FLAGS_MALFORMED: "op_malformed",
        _STLF.SET_TRUST_LINE_FLAGS_NO_TRUST_LINE: "op_no_trust",
        _STLF.SET_TRUST_LINE_FLAGS_CANT_REVOKE: "op_cant_revoke",
        _STLF.SET_TRUST_LINE_FLAGS_INVALID_STATE: "op_invalid_state",
        _STLF.SET_TRUST_LINE_FLAGS_LOW_RESERVE: "op_low_reserve",
    },
    x.OperationType.CLAWBACK: {
        _CB.CLAWBACK_SUCCESS: "op_success",
        _CB.CLAWBACK_MALFORMED: "op_malformed",
        _CB.CLAWBACK_NOT_CLAWBACK_ENABLED: "op_not_clawback_enabled",
        _CB.CLAWBACK_NO_TRUST: "op_no_trust",
        _CB.CLAWBACK_UNDERFUNDED: "op_underfunded",
    },
    x.OperationType.CLAWBACK_CLAIMABLE_BALANCE: {
        _CBB.CLAWBACK_CLAIMABLE_BALANCE_SUCCESS: "op_success",
        _CBB.CLAWBACK_CLAIMABLE_BALANCE_DOES_NOT_EXIST: "op_does_not_exist",
        # Horizon reuses its generic "no issuer" spelling for NOT_ISSUER.
        _CBB.CLAWBACK_CLAIMABLE_BALANCE_NOT_ISSUER: "op_no_issuer",
        _CBB.CLAWBACK_CLAIMABLE_BALANCE_NOT_CLAWBACK_ENABLED: "op_not_clawback_enabled",
    },
}

# OperationResultTr attribute holding the inner result, per operation type.
INNER_RESULT_FIELDS: dict[x.OperationType, str] = {
    x.OperationType.CREATE_ACCOUNT: "create_account_result",
    x.OperationType.PAYMENT: "payment_result",
    x.OperationType.SET_OPTIONS: "set_options_result",
    x.OperationType.CHANGE_TRUST: "change_trust_result",
    x.OperationType.ACCOUNT_MERGE: "account_merge_result",
    x.OperationType.MANAGE_DATA: "manage_data_result",
    x.OperationType.CREATE_CLAIMABLE_BALANCE: "create_claimable_balance_result",
    x.OperationType.CLAIM_CLAIMABLE_BALANCE: "claim_claimable_balance_result",
    x.OperationType.PATH_PAYMENT_STRICT_RECEIVE: "path_payment_strict_receive_result",
    x.OperationType.PATH_PAYMENT_STRICT_SEND: "path_payment_strict_send_result",
    x.OperationType.ALLOW_TRUST: "allow_trust_result",
    x.OperationType.SET_TRUST_LINE_FLAGS: "set_trust_line_flags_result",
    x.OperationType.CLAWBACK: "clawback_result",
    x.OperationType.CLAWBACK_CLAIMABLE_BALANCE: "clawback_claimable_balance_result",
}


def tx_code_name(code: x.TransactionResultCode) -> str:
    return TX_CODE_NAMES[code]


def op_code_name(result: x.OperationResult) -> str:
    if result.code != OP.opINNER:
        return OUTER_OP_CODE_NAMES[result.code]
    assert result.tr is not None
    inner = getattr(result.tr, INNER_RESULT_FIELDS[result.tr.type])
    return INNER_OP_CODE_NAMES[result.tr.type][int(inner.code)]


def result_codes(result: x.TransactionResult) -> dict[str, object]:
    """Horizon's `extras.result_codes` object for a TransactionResult."""
    codes: dict[str, object] = {"transaction": tx_code_name(result.result.code)}
    pair = result.result.inner_result_pair
    if pair is not None:
        # A fee bump: Horizon adds the inner transaction's code and its operations'.
        inner = pair.result.result
        codes["inner_transaction"] = tx_code_name(inner.code)
        if inner.code in (T.txFAILED, T.txSUCCESS) and inner.results:
            codes["operations"] = [op_code_name(r) for r in inner.results]
        return codes
    if result.result.code in (T.txFAILED, T.txSUCCESS) and result.result.results:
        codes["operations"] = [op_code_name(r) for r in result.result.results]
    return codes
