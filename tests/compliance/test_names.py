"""Name screening against the invented sample lists, and the list file formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from compliance.errors import SanctionsListMalformed, SanctionsListUnreadable
from compliance.names import name_key
from compliance.sanctions import ListRef, SanctionsIndex, read_list

SAMPLES = Path(__file__).resolve().parents[2] / "config" / "sanctions"
THRESHOLD = 88


@pytest.fixture(scope="module")
def index() -> SanctionsIndex:
    sdn = read_list(SAMPLES / "sample_sdn.csv", aliases_file=SAMPLES / "sample_alt.csv")
    simple = read_list(SAMPLES / "sample_targets.simple.csv")
    return SanctionsIndex.build(
        [
            (ListRef(1, "ofac-sdn", sdn.sha256), sdn.entries),
            (ListRef(2, "opensanctions", simple.sha256), simple.entries),
        ]
    )


@pytest.mark.parametrize(
    ("name", "entry_id"),
    [
        ("VOLKOV, Aleksandr Ivanovich", "9000001"),  # exact
        ("Aleksandr Ivanovich Volkov", "9000001"),  # word order
        ("Alexandr Ivanovich Volkov", "9000001"),  # spelling variant
        ("Александр Иванович Волков", "9000001"),  # Cyrillic transliteration
        ("Sasha Volkov", "9000001"),  # alias from the SDN remarks
        ("Quillbridge Arms", "9000003"),  # alias from alt.csv
        ("Zeta Maritime Holdings Limited", "9000002"),  # legal form variant
        ("Neil Abara", "9000004"),  # alias, word order
        ("Marguerite Oyelaran Whitcombe", "invented-0001"),  # punctuation
        ("Маргарита Ойеларан-Уиткомб", "invented-0001"),  # Cyrillic alias
        ("Dmitriy Sergeevich Krutov", "invented-0003"),  # Latin query, Cyrillic entry
        ("Nordfjord Commodities AS", "invented-0002"),
    ],
)
def test_variants_hit(index: SanctionsIndex, name: str, entry_id: str) -> None:
    matches = index.match_names([name], THRESHOLD)
    assert [m.entry.entry_id for m in matches][:1] == [entry_id], matches


@pytest.mark.parametrize(
    "name",
    [
        "Northwind Capital Partners LLP",
        "Meridian Bond Trust S.A.",
        "Alexandra Volkova-Smith",
        "Zenith Maritime Services",
        "Margaret Whitfield",
        "Ivan Petrov",
    ],
)
def test_clearly_different_names_do_not_hit(index: SanctionsIndex, name: str) -> None:
    assert index.match_names([name], THRESHOLD) == []


def test_identifiers_hit_exactly_whatever_the_formatting(index: SanctionsIndex) -> None:
    lei = index.match_identifiers(["9695 00ZE TAMA RITI ME87"])
    assert [(m.entry.entry_id, m.by, m.score_tenths) for m in lei] == [
        ("9000002", "identifier", 1000)
    ]
    assert [m.entry.entry_id for m in index.match_identifiers(["zm-0042-invented"])] == ["9000002"]
    assert index.match_identifiers(["969500ZETAMARITIME88"]) == []


def test_name_key_normalises() -> None:
    assert name_key("PETROV, Ivan") == name_key("Иван Петров") == "ivan petrov"
    assert name_key("Müller GmbH") == "muller"


def test_formats_are_detected(tmp_path: Path) -> None:
    assert read_list(SAMPLES / "sample_sdn.csv").format == "ofac_sdn"
    assert read_list(SAMPLES / "sample_targets.simple.csv").format == "opensanctions_simple"


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"", SanctionsListMalformed, "empty"),
        (b"name;country\nX;Y\n", SanctionsListMalformed, "neither"),
        (b"\xff\xfe\x00bad", SanctionsListUnreadable, "not UTF-8"),
        (b"id,schema,name\n,Person,Nobody\n", SanctionsListMalformed, "id and name"),
        (b"id,schema,name\na,Person,X\na,Person,Y\n", SanctionsListMalformed, "appears twice"),
        (b"id,schema,name\n", SanctionsListMalformed, "no entries"),
        (
            b'9000001,"X","individual","P","-0-","-0-","-0-","-0-","-0-","-0-","-0-","-0-"\n'
            b'9000002,"Y","individual"\n',
            SanctionsListMalformed,
            "line 2: 3 columns",
        ),
        (
            b'9000001,"-0-","individual","P","-0-","-0-","-0-","-0-","-0-","-0-","-0-","-0-"\n',
            SanctionsListMalformed,
            "has no name",
        ),
    ],
)
def test_bad_files_are_refused_with_the_reason(
    tmp_path: Path, content: bytes, error: type[Exception], message: str
) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(content)
    with pytest.raises(error, match=message):
        read_list(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SanctionsListUnreadable, match="cannot read"):
        read_list(tmp_path / "nope.csv")
