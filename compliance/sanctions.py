"""Sanctions lists: reading the two supported file formats, and matching names to them.

Formats (detected from the file, or named):

``ofac_sdn``
    The OFAC SDN delimited file ``sdn.csv``: no header, twelve columns (ent_num,
    SDN_Name, SDN_Type, Program, Title, Call_Sign, Vess_type, Tonnage, GRT, Vess_flag,
    Vess_owner, Remarks), ``-0-`` for an empty value. Aliases are read from the remarks
    (``a.k.a. 'NAME'``, also ``f.k.a.``) and from an optional companion ``alt.csv`` (ent_num,
    alt_num, alt_type, alt_name, alt_remarks); identifiers from the remarks
    (``Registration ID``, ``LEI``, ``Tax ID No.``, ``Passport``, ``National ID No.`` ...).
``opensanctions_simple``
    OpenSanctions ``targets.simple.csv``: a header row with at least ``id``, ``schema``
    and ``name``; ``aliases`` and ``identifiers`` hold several values separated by ``;``.

A file that cannot be read or does not match its format raises a ``SanctionsListError``
naming the line; nothing is returned, so the list in force stays in force.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from rapidfuzz import fuzz, process

from compliance.errors import SanctionsListMalformed, SanctionsListUnreadable
from compliance.names import identifier_key, name_key

ListFormat = Literal["ofac_sdn", "opensanctions_simple"]
FORMATS: Final[tuple[ListFormat, ...]] = ("ofac_sdn", "opensanctions_simple")
DEFAULT_LIST_NAME: Final[dict[ListFormat, str]] = {
    "ofac_sdn": "ofac-sdn",
    "opensanctions_simple": "opensanctions",
}
_OFAC_COLUMNS = 12
_OFAC_NULL = "-0-"
_AKA = re.compile(r"\b[af]\.k\.a\.,?\s*'([^']+)'", re.IGNORECASE)
_ID_IN_REMARKS = re.compile(
    r"(?:Registration (?:ID|Number)|LEI|Legal Entity Number|Tax ID No\.|Passport|"
    r"National ID No\.|Company Number|SWIFT/BIC)\s+([A-Za-z0-9][A-Za-z0-9 /-]*?[A-Za-z0-9])"
    r"\s*(?:\(|;|\.$|$)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SanctionsEntry:
    entry_id: str
    kind: str
    name: str
    aliases: tuple[str, ...] = ()
    identifiers: tuple[str, ...] = ()
    programs: str = ""


@dataclass(frozen=True)
class ParsedList:
    format: ListFormat
    sha256: str
    entries: tuple[SanctionsEntry, ...]


# -- reading ------------------------------------------------------------------------


def read_list(
    path: Path, *, list_format: ListFormat | None = None, aliases_file: Path | None = None
) -> ParsedList:
    """Read and validate a list file (and an OFAC ``alt.csv``); nothing is stored here.

    Raises ``SanctionsListUnreadable`` or ``SanctionsListMalformed``.
    """
    raw = _read_bytes(path)
    text = _decode(raw, path)
    detected = list_format or detect_format(text, path)
    if detected == "ofac_sdn":
        alt_text = _decode(_read_bytes(aliases_file), aliases_file) if aliases_file else None
        entries = parse_ofac_sdn(text, alt_text)
        digest = hashlib.sha256(raw + (alt_text or "").encode()).hexdigest()
    elif detected == "opensanctions_simple":
        if aliases_file is not None:
            raise SanctionsListMalformed("an aliases file goes only with an OFAC SDN list")
        entries = parse_opensanctions_simple(text)
        digest = hashlib.sha256(raw).hexdigest()
    else:  # pragma: no cover - Literal exhausts it
        raise SanctionsListMalformed(f"unknown format {detected!r}")
    if not entries:
        raise SanctionsListMalformed(f"{path}: the list has no entries")
    return ParsedList(format=detected, sha256=digest, entries=tuple(entries))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SanctionsListUnreadable(f"cannot read {path}: {exc.strerror or exc}") from exc


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SanctionsListUnreadable(f"{path} is not UTF-8 text (byte {exc.start})") from exc


def detect_format(text: str, path: Path) -> ListFormat:
    first = next(csv.reader(io.StringIO(text)), None)
    if not first:
        raise SanctionsListMalformed(f"{path} is empty")
    header = [c.strip().lower() for c in first]
    if {"id", "schema", "name"} <= set(header):
        return "opensanctions_simple"
    if len(first) == _OFAC_COLUMNS and first[0].strip().isdigit():
        return "ofac_sdn"
    raise SanctionsListMalformed(
        f"{path} is neither an OFAC SDN CSV (12 columns, no header) nor an OpenSanctions "
        "targets.simple.csv (header with id, schema, name)"
    )


def _ofac_value(value: str) -> str:
    value = value.strip()
    return "" if value == _OFAC_NULL else value


def parse_ofac_sdn(text: str, alt_text: str | None = None) -> list[SanctionsEntry]:
    alt_names: dict[str, list[str]] = {}
    if alt_text is not None:
        for line_no, row in enumerate(csv.reader(io.StringIO(alt_text)), start=1):
            if not row or all(not c.strip() for c in row) or row[0].strip() == "\x1a":
                continue
            if len(row) < 4 or not row[0].strip().isdigit() or not _ofac_value(row[3]):
                raise SanctionsListMalformed(
                    f"alt.csv line {line_no}: expected ent_num, "
                    "alt_num, alt_type, alt_name, alt_remarks"
                )
            alt_names.setdefault(row[0].strip(), []).append(_ofac_value(row[3]))
    entries: list[SanctionsEntry] = []
    seen: set[str] = set()
    for line_no, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        # the official file ends with a SUB (0x1A) control character on its own line
        if not row or all(not c.strip() for c in row) or row[0].strip() == "\x1a":
            continue
        if len(row) != _OFAC_COLUMNS:
            raise SanctionsListMalformed(
                f"SDN line {line_no}: {len(row)} columns, the SDN format has {_OFAC_COLUMNS}"
            )
        ent_num, name = row[0].strip(), _ofac_value(row[1])
        if not ent_num.isdigit():
            raise SanctionsListMalformed(f"SDN line {line_no}: ent_num {ent_num!r} is not a number")
        if not name:
            raise SanctionsListMalformed(f"SDN line {line_no}: entry {ent_num} has no name")
        if ent_num in seen:
            raise SanctionsListMalformed(f"SDN line {line_no}: entry {ent_num} appears twice")
        seen.add(ent_num)
        remarks = _ofac_value(row[11])
        aliases = [*_AKA.findall(remarks), *alt_names.get(ent_num, [])]
        identifiers = [m.strip() for m in _ID_IN_REMARKS.findall(remarks)]
        entries.append(
            SanctionsEntry(
                entry_id=ent_num,
                kind=_ofac_value(row[2]) or "entity",
                name=name,
                aliases=tuple(dict.fromkeys(a.strip() for a in aliases if a.strip())),
                identifiers=tuple(dict.fromkeys(identifiers)),
                programs=_ofac_value(row[3]),
            )
        )
    return entries


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(";") if v.strip()]


def parse_opensanctions_simple(text: str) -> list[SanctionsEntry]:
    reader = csv.DictReader(io.StringIO(text))
    entries: list[SanctionsEntry] = []
    seen: set[str] = set()
    for row in reader:
        line_no = reader.line_num
        if None in row:
            raise SanctionsListMalformed(f"line {line_no}: more values than header columns")
        entry_id, name = (row.get("id") or "").strip(), (row.get("name") or "").strip()
        if not entry_id or not name:
            raise SanctionsListMalformed(f"line {line_no}: id and name are required")
        if entry_id in seen:
            raise SanctionsListMalformed(f"line {line_no}: entry {entry_id} appears twice")
        seen.add(entry_id)
        entries.append(
            SanctionsEntry(
                entry_id=entry_id,
                kind=(row.get("schema") or "").strip() or "Thing",
                name=name,
                aliases=tuple(dict.fromkeys(_split(row.get("aliases")))),
                identifiers=tuple(dict.fromkeys(_split(row.get("identifiers")))),
                programs="; ".join(_split(row.get("sanctions")))[:500],
            )
        )
    return entries


# -- matching -----------------------------------------------------------------------


@dataclass(frozen=True)
class ListRef:
    """One list version in force: the database id of the load and the list's name."""

    version_id: int
    list_name: str
    sha256: str


@dataclass(frozen=True)
class Match:
    list_ref: ListRef
    entry: SanctionsEntry
    matched_name: str
    queried: str
    #: 0-100, rounded to one decimal; 100 for an identifier match
    score_tenths: int
    by: Literal["name", "identifier"]


@dataclass
class SanctionsIndex:
    """The lists in force, prepared for matching: every name and alias as a name key.

    Name matching compares name keys (``compliance.names.name_key``: transliterated,
    legal forms dropped, words sorted) with rapidfuzz's normalised Indel similarity, so
    spelling, transliteration and word-order variants score high; an identifier matches
    only exactly (after ``identifier_key``), and always counts as a hit.
    """

    lists: tuple[ListRef, ...] = ()
    _keys: list[str] = field(default_factory=list)
    _owners: list[tuple[int, int, str]] = field(default_factory=list)
    _entries: list[tuple[ListRef, SanctionsEntry]] = field(default_factory=list)
    _by_identifier: dict[str, list[int]] = field(default_factory=dict)
    #: key length -> (keys of that length, their positions in ``_keys``)
    _by_length: dict[int, tuple[list[str], list[int]]] = field(default_factory=dict)

    @classmethod
    def build(cls, lists: Iterable[tuple[ListRef, Sequence[SanctionsEntry]]]) -> SanctionsIndex:
        index = cls()
        refs: list[ListRef] = []
        for ref, entries in lists:
            refs.append(ref)
            for entry in entries:
                position = len(index._entries)
                index._entries.append((ref, entry))
                for name in (entry.name, *entry.aliases):
                    key = name_key(name)
                    if key:
                        index._keys.append(key)
                        index._owners.append((position, len(index._keys) - 1, name))
                for identifier in entry.identifiers:
                    id_key = identifier_key(identifier)
                    if id_key:
                        index._by_identifier.setdefault(id_key, []).append(position)
        index.lists = tuple(refs)
        for position, key in enumerate(index._keys):
            keys, positions = index._by_length.setdefault(len(key), ([], []))
            keys.append(key)
            positions.append(position)
        return index

    @property
    def name_count(self) -> int:
        return len(self._keys)

    def match_names(self, names: Sequence[str], threshold: int) -> list[Match]:
        """Entries whose name or alias scores at least ``threshold`` (0-100) against any
        of ``names``; the best match per entry, best first."""
        queries = [(n, name_key(n)) for n in names]
        queries = [(n, k) for n, k in queries if k]
        best: dict[int, Match] = {}
        for queried, key in queries:
            for score, key_index in self._candidates(key, threshold):
                position, _, matched = self._owners[key_index]
                ref, entry = self._entries[position]
                tenths = round(score * 10)
                prior = best.get(position)
                if prior is None or tenths > prior.score_tenths:
                    best[position] = Match(ref, entry, matched, queried, tenths, "name")
        return sorted(best.values(), key=lambda m: (-m.score_tenths, m.entry.entry_id))

    def _candidates(self, key: str, threshold: int) -> Iterator[tuple[float, int]]:
        """(score, key index) of every key scoring at least ``threshold`` against ``key``.

        Only lengths that can reach the threshold are scanned: the normalised Indel
        similarity of strings of lengths q and L is at most 1 - |q - L| / (q + L), so
        with s = threshold / 100 a match needs q*s/(2-s) <= L <= q*(2-s)/s. The result is
        the same as scanning every key (tests/compliance/test_length_filter.py), only faster.
        """
        q = len(key)
        s = max(threshold, 1) / 100
        shortest, longest = math.ceil(q * s / (2 - s) - 1e-9), math.floor(q * (2 - s) / s + 1e-9)
        for length in range(max(shortest, 1), longest + 1):
            bucket = self._by_length.get(length)
            if bucket is None:
                continue
            keys, positions = bucket
            for _choice, score, i in process.extract(
                key, keys, scorer=fuzz.ratio, score_cutoff=threshold, limit=None
            ):
                yield score, positions[i]

    def match_identifiers(self, identifiers: Sequence[str]) -> list[Match]:
        found: list[Match] = []
        for identifier in identifiers:
            for position in self._by_identifier.get(identifier_key(identifier), []):
                ref, entry = self._entries[position]
                found.append(Match(ref, entry, identifier, identifier, 1000, "identifier"))
        return found
