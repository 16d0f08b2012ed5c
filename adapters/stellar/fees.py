"""What a Stellar transaction bids per operation, from Horizon's fee statistics.

A transaction's fee is a bid: stellar-core charges each transaction in a ledger the
ledger's clearing price, the lowest bid per operation it included (CAP-0005), or the
network's base fee while the ledger has room for every waiting transaction. So bidding
above the recent prices costs nothing while there is no surge, and only the market
price during one; bidding the base fee under a surge leaves a commit out of ledger
after ledger until it expires, and the same bid signed again fares no better.

The bid: twice the 90th percentile of the fee charged per operation over the last five
ledgers (``fee_stats.fee_charged.p90``), at least the base fee, at most
``max_fee_per_op_stroops``. The 90th percentile follows a surge that has reached most
recent ledgers without being set by one outlier; doubling it leaves room for a surge
still rising between the read and the next ledger. The cap bounds what one
transaction can cost if the statistics are wild (a public Horizon lagging, a spike);
a bid at the cap may still be outbid, and then expires and is signed again, priced
from the statistics of its time.
"""

from __future__ import annotations

from adapters.stellar.horizon import FeeStats

#: the percentile of recent charged fees the bid follows, and the headroom above it
FOLLOWED_PERCENTILE = "p90"
HEADROOM = 2


def bid_per_op(stats: FeeStats, *, base_fee_stroops: int, max_fee_per_op_stroops: int) -> int:
    """The fee per operation to sign with, in stroops (see the module docstring)."""
    if max_fee_per_op_stroops < base_fee_stroops:
        raise ValueError(
            f"the cap {max_fee_per_op_stroops} stroops is below the base fee {base_fee_stroops}"
        )
    followed = stats.fee_charged.get(FOLLOWED_PERCENTILE, stats.last_ledger_base_fee_stroops)
    wanted = max(base_fee_stroops, stats.last_ledger_base_fee_stroops, HEADROOM * followed)
    return min(wanted, max_fee_per_op_stroops)
