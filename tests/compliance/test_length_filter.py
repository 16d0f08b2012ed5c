"""The length filter of sanctions name matching finds exactly what a full scan finds."""

from __future__ import annotations

import random
import string

import pytest
from rapidfuzz import fuzz, process

from compliance.names import name_key
from compliance.sanctions import ListRef, SanctionsEntry, SanctionsIndex


def _name(rng: random.Random) -> str:
    words = rng.randint(1, 4)
    return " ".join(
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 11)))
        for _ in range(words)
    )


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [60, 75, 88, 95, 100])
def test_same_matches_as_scanning_every_name(seed: int, threshold: int) -> None:
    rng = random.Random(seed)
    names = [_name(rng) for _ in range(1500)]
    entries = [SanctionsEntry(f"e{n}", "individual", name) for n, name in enumerate(names)]
    index = SanctionsIndex.build([(ListRef(1, "test", "0" * 64), entries)])
    queries = [rng.choice(names) for _ in range(20)]
    # near misses: one letter changed, dropped or added
    for q in list(queries):
        i = rng.randrange(len(q))
        queries += [q[:i] + "x" + q[i + 1 :], q[:i] + q[i + 1 :], q[:i] + "y" + q[i:]]
    for query in queries:
        key = name_key(query)
        if not key:
            continue
        filtered = sorted(index._keys[i] for _s, i in index._candidates(key, threshold))
        scanned = sorted(
            choice
            for choice, _s, _i in process.extract(
                key, index._keys, scorer=fuzz.ratio, score_cutoff=threshold, limit=None
            )
        )
        assert filtered == scanned, (seed, threshold, query)
