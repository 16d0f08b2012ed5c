"""The shape of the code, checked: a ratchet that holds the layout the README describes.

Read from the source text (``ast``), nothing imported or run:

- the package rule: ``ledger`` imports nothing of ours, ``adapters`` only ``adapters``,
  ``compliance`` only itself and ``ledger``;
- inside ``settlement``, the layers: the domain imports no other layer; services and DVP
  import no entry point (``api``, ``console``, ``cli``), no story (``demo``) and not the
  composition root; the client imports only the shared signing and JSON modules;
- no import cycles between modules, counting deferred imports inside functions (an
  import moved into a function to dodge a cycle still is one), not those under
  ``if TYPE_CHECKING:``;
- no SQL text outside ``ledger/`` and ``compliance/records.py`` (docstrings aside);
- no function over 70 lines outside tests and benchmarks, except an allow-list that may
  only shrink (an entry that no longer needs its place fails the test, so it is removed);
- money and time: no ``float(`` in the engine's packages, no ``datetime.now(`` outside the
  clock, no bare ``except:``.

Migrations (``ledger/migrations/versions``) are left out of the function-length rule: a
migration is history, never edited after it lands, and its functions are mostly DDL text.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("settlement", "adapters", "compliance", "ledger")
MAX_FUNCTION_LINES = 70

#: functions allowed over the limit, with why; this list may only shrink
LONG_FUNCTIONS: dict[str, str] = {}

#: modules that may call float(), and why: none of them handles money
FLOAT_ALLOWED: dict[str, str] = {
    "adapters.localnet.stellar.faults": "fault durations in seconds",
    "adapters.localnet.xrpl.rpc": "fault durations in seconds, from the fault RPC",
}

#: modules where SQL text belongs
SQL_HOMES = ("ledger/", "compliance/records.py")
SQL = re.compile(
    r"\b(SELECT\s+[\w*(]|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|TRUNCATE\s|"
    r"CREATE\s+(TABLE|DATABASE|INDEX|ROLE|FUNCTION|TRIGGER)|ALTER\s+TABLE|DROP\s+TABLE)"
)

ENTRY_POINTS = ("settlement.api", "settlement.console", "settlement.cli")
#: (importer prefix, imported prefixes it must not import, why)
LAYER_RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("ledger", ("settlement", "compliance", "adapters"), "ledger imports nothing of ours"),
    ("adapters", ("settlement", "compliance", "ledger"), "adapters import only adapters"),
    ("compliance", ("settlement", "adapters"), "compliance imports only itself and ledger"),
    (
        "settlement.domain",
        (
            "settlement.services",
            "settlement.dvp",
            "settlement.bootstrap",
            "settlement.demo",
            *ENTRY_POINTS,
        ),
        "the domain imports no other layer",
    ),
    (
        "settlement.services",
        ("settlement.bootstrap", "settlement.demo", *ENTRY_POINTS),
        "services import no entry point",
    ),
    (
        "settlement.dvp",
        ("settlement.bootstrap", "settlement.demo", *ENTRY_POINTS),
        "DVP imports no entry point",
    ),
    ("settlement.bootstrap", ENTRY_POINTS, "the composition root imports no entry point"),
)
#: what the client (shipped to allocators) may import of the server package
CLIENT_MAY_IMPORT = frozenset({"settlement.signing", "settlement.strict_json"})


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def relative(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


@cache
def modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join(parts)
            found[name] = Module(name, path, ast.parse(path.read_text(), str(path)))
    return found


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, deferred ones inside functions too (a deferred import is
    still a dependency), but not those under ``if TYPE_CHECKING:`` (never run)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and ast.unparse(child.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            for other in child.orelse:
                yield from _import_nodes(other)
        else:
            yield from _import_nodes(child)


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.name.split(".")
    if module.path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: Module) -> set[str]:
    """Our modules this one imports (a name that is a submodule counts as that
    submodule)."""
    known = modules()
    out: set[str] = set()
    for node in _import_nodes(module.tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return {name for name in out if name.split(".")[0] in PACKAGES}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_packages_and_layers_import_only_downwards() -> None:
    broken = []
    for module in modules().values():
        for importer, forbidden, why in LAYER_RULES:
            if not _under(module.name, importer):
                continue
            for target in sorted(imports_of(module)):
                if any(_under(target, f) for f in forbidden):
                    broken.append(f"{module.relative} imports {target}: {why}")
    assert not broken, "\n".join(broken)


def test_the_client_imports_only_the_shared_signing_and_json_modules() -> None:
    client = modules()["settlement.client"]
    ours = {name for name in imports_of(client) if _under(name, "settlement")}
    assert ours <= CLIENT_MAY_IMPORT, sorted(ours - CLIENT_MAY_IMPORT)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_cycles() -> None:
    known = modules()
    graph = {
        name: {t for t in imports_of(module) if t in known and t != name}
        for name, module in known.items()
    }
    cycles = _cycles(graph)
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _functions(module: Module) -> Iterator[tuple[str, int]]:
    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                assert child.end_lineno is not None
                yield name, child.end_lineno - child.lineno + 1
                yield from walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    return walk(module.tree, "")


def test_no_function_is_longer_than_the_limit() -> None:
    too_long: dict[str, int] = {}
    for module in modules().values():
        if "migrations" in module.path.parts:
            continue
        for name, lines in _functions(module):
            if lines > MAX_FUNCTION_LINES:
                too_long[f"{module.relative}:{name}"] = lines
    unexpected = {k: v for k, v in too_long.items() if k not in LONG_FUNCTIONS}
    assert unexpected == {}, f"split these (over {MAX_FUNCTION_LINES} lines): {unexpected}"
    mended = sorted(set(LONG_FUNCTIONS) - set(too_long))
    assert mended == [], f"no longer too long: remove them from LONG_FUNCTIONS: {mended}"


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _sql_texts(module: Module) -> Iterator[int]:
    docstrings = _docstrings(module.tree)
    parts_of_fstrings = set()
    texts: list[tuple[int, str]] = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.JoinedStr):
            # an f-string: its literal parts with each placeholder read as a name
            text = "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
            parts_of_fstrings.update(id(v) for v in node.values)
            texts.append((node.lineno, text))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and id(node) not in parts_of_fstrings
        ):
            texts.append((node.lineno, node.value))
    for line, text in texts:
        if SQL.search(text):
            yield line


def test_sql_text_lives_only_in_ledger_and_the_compliance_records() -> None:
    stray = [
        f"{module.relative}:{line}"
        for module in modules().values()
        if not module.relative.startswith(SQL_HOMES)
        for line in _sql_texts(module)
    ]
    assert not stray, "\n".join(stray)


def test_the_sql_finder_sees_sql_and_not_prose() -> None:
    assert SQL.search("SELECT id FROM commitments")
    assert SQL.search("INSERT INTO audit_log (seq) VALUES (:seq)")
    assert SQL.search("UPDATE settlements SET status = :s")
    assert not SQL.search("select the legs to update first")


def _calls(module: Module, dotted: str) -> Iterator[int]:
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == dotted:
            yield node.lineno


def test_money_is_never_float_and_time_comes_from_the_clock() -> None:
    found = []
    for module in modules().values():
        if module.name not in FLOAT_ALLOWED:
            found += [f"{module.relative}:{n}: float()" for n in _calls(module, "float")]
        if module.name not in ("settlement.clock", "settlement.signing", "adapters.resilience"):
            # the client signs at its own wall time; the breaker's cool-down is transport
            # timing, not ledger or business time
            found += [
                f"{module.relative}:{n}: datetime.now()" for n in _calls(module, "datetime.now")
            ]
        found += [
            f"{module.relative}:{node.lineno}: bare except"
            for node in ast.walk(module.tree)
            if isinstance(node, ast.ExceptHandler) and node.type is None
        ]
    assert not found, "\n".join(found)
