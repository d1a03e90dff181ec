"""The import graph follows the data flow: bank -> hypernet/meta -> api, nothing imports upwards, no cycles, and
nothing outside the built-in suite reaches into it (generators read tasks through the provider interface)."""

from __future__ import annotations

import pytest

from tests.structure._tree import PACKAGES, PREFIX, imports, modules

RANK = {"bank": 0, "hypernet": 1, "meta": 1, "api": 2}
SUITE = PREFIX + "bank.suite"
BARE = tuple(PACKAGES)


def _graph() -> dict[str, set[str]]:
    mods = dict(modules())
    return {m: {i for i in imports(p, m) if i.startswith(PREFIX)} for m, p in mods.items()}


def _package(name: str) -> str:
    return name[len(PREFIX):].split(".")[0]


def test_no_bare_top_level_imports():
    bad = {m: sorted(i for i in imports(p, m) if i.split(".")[0] in BARE) for m, p in modules()}
    assert not {m: v for m, v in bad.items() if v}, "import through `loragen.<package>`, never the bare folder name"


def test_no_upward_or_sideways_imports():
    bad = []
    for mod, deps in _graph().items():
        for dep in deps:
            src, dst = _package(mod), _package(dep)
            if src != dst and RANK[dst] >= RANK[src]:
                bad.append(f"{mod} -> {dep}")
    assert not bad, "imports must follow bank -> hypernet/meta -> api:\n" + "\n".join(sorted(bad))


def test_suite_is_reached_only_through_its_provider():
    bad = sorted(f"{m} -> {d}" for m, deps in _graph().items() if not m.startswith(SUITE)
                 for d in deps if d == SUITE or d.startswith(SUITE + "."))
    assert not bad, "only bank/suite imports bank.suite; others go through loragen.bank.tasks:\n" + "\n".join(bad)


def test_no_import_cycles_between_modules():
    graph = _graph()
    names = set(graph)

    def targets(mod: str) -> set[str]:  # `from pkg import name` may name a submodule or an attribute
        return {d if d in names else d.rsplit(".", 1)[0] for d in graph[mod]} & names - {mod}

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(mod: str) -> None:
        state[mod] = 1
        stack.append(mod)
        for dep in sorted(targets(mod)):
            if state.get(dep) == 1 and not dep.startswith(mod + ".") and not mod.startswith(dep + "."):
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod)


@pytest.mark.parametrize("limit", [400])
def test_no_product_module_has_two_jobs(limit):
    long = sorted(f"{p.relative_to(p.parents[1])}: {n}" for _, p in modules()
                  if (n := len(p.read_text().splitlines())) > limit)
    assert not long, f"files over {limit} lines (split them by job):\n" + "\n".join(long)
