"""The project's import graph: no cycles, and no import from a lower layer to a higher one.

Layers, top to bottom: tools/ → main.py → modes/ → engine/ → config/ → models/, dataset/, utils/ (the
Config may validate a keyframe-net spec with models/; models/, dataset/ and utils/ never see the Config).
Every import counts, also the ones inside functions (lazy imports are still dependencies).
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"tools": 5, "main": 4, "modes": 3, "engine": 2, "config": 1, "models": 0, "dataset": 0, "utils": 0}


def project_modules() -> dict[str, Path]:
    mods = {"main": REPO / "main.py"}
    for package in LAYERS:
        for path in sorted((REPO / package).glob("*.py")) if (REPO / package).is_dir() else []:
            mods[f"{package}.{path.stem}" if path.stem != "__init__" else package] = path
    return mods


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """Project modules imported anywhere in ``path`` (``from pkg import mod`` resolves to ``pkg.mod``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in known and n != module}
    return found


def import_graph() -> dict[str, set[str]]:
    mods = project_modules()
    return {m: imports_of(p, m, set(mods)) for m, p in mods.items()}


def layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (iterative DFS with colours)."""
    state = {m: 0 for m in graph}  # 0 new, 1 on the stack, 2 done
    for start in graph:
        if state[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path, state[start] = [start], 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state[child] == 1:
                return path[path.index(child):] + [child]
            elif state[child] == 0:
                state[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_cycle_finder_finds_a_hand_made_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 60  # the walk found the project
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_no_import_points_up():
    upward = sorted(f"{a} -> {b}" for a, deps in import_graph().items() for b in deps if layer(b) > layer(a))
    assert upward == []


def test_readme_shows_a_working_import():
    from engine.inference import VideoPredictor
    from engine.streaming.predictor import VideoPredictor as Moved
    assert VideoPredictor is Moved
