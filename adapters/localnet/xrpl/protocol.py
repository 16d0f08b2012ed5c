"""Protocol constants of the XRP Ledger used by the local node.

Values are facts of the protocol (rippled's ``LedgerFormats.h``, ``TxFlags.h`` and
``Indexes.cpp``); ``tests/adapters/localnet/xrpl/test_protocol_constants.py`` checks every flag
against the definitions file that ships with xrpl-py, so a typo cannot hide here.
"""

from __future__ import annotations

from typing import Final

DROPS_PER_XRP: Final = 1_000_000
TOTAL_SUPPLY_DROPS: Final = 100_000_000_000 * DROPS_PER_XRP

GENESIS_ACCOUNT: Final = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"
GENESIS_SEED: Final = "snoPBrXtMeMyMHUVTgbuqAfg1SUTb"  # the well-known "masterpassphrase"

# ACCOUNT_ONE: the issuer written into a RippleState's Balance, which belongs to neither side.
NO_ACCOUNT: Final = "rrrrrrrrrrrrrrrrrrrrBZbvji"

RIPPLE_EPOCH_UNIX_S: Final = 946_684_800  # 2000-01-01T00:00:00Z

# Directory page numbers are UInt64 fields, which rippled renders as 16 hex digits.
ROOT_PAGE: Final = "0000000000000000"
ZERO_HASH: Final = "0" * 64

MAX_TICKETS_PER_ACCOUNT: Final = 250
MAX_TICKETS_PER_TX: Final = 250
# Network ids up to 1024 are "legacy" networks whose transactions must not carry NetworkID.
MAX_LEGACY_NETWORK_ID: Final = 1024

# --- AccountRoot flags (lsf) -----------------------------------------------------------
LSF_PASSWORD_SPENT: Final = 0x00010000
LSF_REQUIRE_DEST_TAG: Final = 0x00020000
LSF_REQUIRE_AUTH: Final = 0x00040000
LSF_DISALLOW_XRP: Final = 0x00080000
LSF_DISABLE_MASTER: Final = 0x00100000
LSF_NO_FREEZE: Final = 0x00200000
LSF_GLOBAL_FREEZE: Final = 0x00400000
LSF_DEFAULT_RIPPLE: Final = 0x00800000
LSF_DEPOSIT_AUTH: Final = 0x01000000
LSF_ALLOW_TRUST_LINE_LOCKING: Final = 0x40000000

# --- RippleState flags ---------------------------------------------------------------
LSF_LOW_RESERVE: Final = 0x00010000
LSF_HIGH_RESERVE: Final = 0x00020000
LSF_LOW_AUTH: Final = 0x00040000
LSF_HIGH_AUTH: Final = 0x00080000
LSF_LOW_NO_RIPPLE: Final = 0x00100000
LSF_HIGH_NO_RIPPLE: Final = 0x00200000
LSF_LOW_FREEZE: Final = 0x00400000
LSF_HIGH_FREEZE: Final = 0x00800000
LSF_LOW_DEEP_FREEZE: Final = 0x02000000
LSF_HIGH_DEEP_FREEZE: Final = 0x04000000

# --- AccountSet SetFlag / ClearFlag values (asf) -------------------------------------
ASF_REQUIRE_DEST: Final = 1
ASF_REQUIRE_AUTH: Final = 2
ASF_DISALLOW_XRP: Final = 3
ASF_DISABLE_MASTER: Final = 4
ASF_ACCOUNT_TXN_ID: Final = 5
ASF_NO_FREEZE: Final = 6
ASF_GLOBAL_FREEZE: Final = 7
ASF_DEFAULT_RIPPLE: Final = 8
ASF_DEPOSIT_AUTH: Final = 9
ASF_ALLOW_TRUST_LINE_LOCKING: Final = 17

# --- Transfer rates (rippled's QUALITY_ONE: 1e9 means "no fee") -------------------------
TRANSFER_RATE_PARITY: Final = 1_000_000_000
TRANSFER_RATE_MAX: Final = 2_000_000_000
# AccountSet TickSize bounds (Quality::minTickSize / maxTickSize); 0 clears it.
MIN_TICK_SIZE: Final = 3
MAX_TICK_SIZE: Final = 16

# --- Transaction flags (tf) -----------------------------------------------------------
TF_FULLY_CANONICAL_SIG: Final = 0x80000000
TF_INNER_BATCH_TXN: Final = 0x40000000
# Bits no transaction type may set (rippled's tfUniversalMask is the complement).
TF_UNIVERSAL: Final = TF_FULLY_CANONICAL_SIG

TF_REQUIRE_DEST_TAG: Final = 0x00010000
TF_OPTIONAL_DEST_TAG: Final = 0x00020000
TF_REQUIRE_AUTH: Final = 0x00040000
TF_OPTIONAL_AUTH: Final = 0x00080000
TF_DISALLOW_XRP: Final = 0x00100000
TF_ALLOW_XRP: Final = 0x00200000
ACCOUNT_SET_TF: Final = (
    TF_REQUIRE_DEST_TAG
    | TF_OPTIONAL_DEST_TAG
    | TF_REQUIRE_AUTH
    | TF_OPTIONAL_AUTH
    | TF_DISALLOW_XRP
    | TF_ALLOW_XRP
)

TF_NO_RIPPLE_DIRECT: Final = 0x00010000
TF_PARTIAL_PAYMENT: Final = 0x00020000
TF_LIMIT_QUALITY: Final = 0x00040000
PAYMENT_TF: Final = TF_NO_RIPPLE_DIRECT | TF_PARTIAL_PAYMENT | TF_LIMIT_QUALITY

TF_SETF_AUTH: Final = 0x00010000
TF_SET_NO_RIPPLE: Final = 0x00020000
TF_CLEAR_NO_RIPPLE: Final = 0x00040000
TF_SET_FREEZE: Final = 0x00100000
TF_CLEAR_FREEZE: Final = 0x00200000
TF_SET_DEEP_FREEZE: Final = 0x00400000
TF_CLEAR_DEEP_FREEZE: Final = 0x00800000
TRUST_SET_TF: Final = (
    TF_SETF_AUTH
    | TF_SET_NO_RIPPLE
    | TF_CLEAR_NO_RIPPLE
    | TF_SET_FREEZE
    | TF_CLEAR_FREEZE
    | TF_SET_DEEP_FREEZE
    | TF_CLEAR_DEEP_FREEZE
)

# --- Ledger object name spaces (first two bytes hashed into every object index) ---------
SPACE_ACCOUNT: Final = b"\x00a"
SPACE_OWNER_DIR: Final = b"\x00O"
SPACE_DIR_NODE: Final = b"\x00d"
SPACE_TRUST_LINE: Final = b"\x00r"
SPACE_ESCROW: Final = b"\x00u"
SPACE_TICKET: Final = b"\x00T"
SPACE_FEE_SETTINGS: Final = b"\x00e"
SPACE_DEPOSIT_PREAUTH: Final = b"\x00p"

# --- Hash prefixes (rippled HashPrefix.h: three ASCII letters and a zero byte) ----------
PREFIX_TRANSACTION_ID: Final = b"TXN\x00"
PREFIX_TX_NODE: Final = b"SND\x00"
PREFIX_LEAF_NODE: Final = b"MLN\x00"
PREFIX_INNER_NODE: Final = b"MIN\x00"
PREFIX_LEDGER_MASTER: Final = b"LWR\x00"
