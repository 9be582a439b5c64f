"""The project's import graph: no cycles, and no import from a lower layer to a higher one.

Layers, top to bottom: tools/ → main.py → modes/ → engine/ → config/ → models/, dataset/, utils/ (the
Config may validate a keyframe-net spec with models/; models/, dataset/ and utils/ never see the Config).
Inside engine/ the sub-packages are layers too (ENGINE_LAYERS): the public re-exports on top, then benchmarking
and training, streaming, evaluation, teacher and deployment, and the shared modules (distributed, runs,
model_builder) at the bottom. Every module at every depth of sub-package counts, and every import, also the
ones inside functions (lazy imports are still dependencies).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"tools": 5, "main": 4, "modes": 3, "engine": 2, "config": 1, "models": 0, "dataset": 0, "utils": 0}
# engine/ inside: the longest matching prefix gives a module's layer; engine's own modules not listed are shared (0).
ENGINE_LAYERS = {"engine.inference": 6, "engine.keyframe_policy": 6, "engine.benchmarking": 5, "engine.training": 5,
                 "engine.streaming": 4, "engine.evaluation": 3, "engine.teacher": 2, "engine.deployment": 2,
                 "engine.distributed": 0, "engine.runs": 0, "engine.model_builder": 0, "engine": 0}


def module_name(path: Path) -> str:
    """``engine/streaming/predictor.py`` -> ``engine.streaming.predictor``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    mods = {"main": REPO / "main.py"}
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")) if (REPO / package).is_dir() else []:
            mods[module_name(path)] = path
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


def engine_layer(module: str) -> int:
    """The layer of an engine module: its longest prefix in ENGINE_LAYERS (KeyError: a module no layer names)."""
    prefixes = [p for p in ENGINE_LAYERS if module == p or module.startswith(p + ".")]
    return ENGINE_LAYERS[max(prefixes, key=len)]


def layer(module: str) -> tuple[int, int]:
    top = module.split(".")[0]
    return LAYERS[top], engine_layer(module) if top == "engine" else 0


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


def test_the_walk_sees_every_depth_and_every_engine_module_has_a_layer():
    mods = project_modules()
    assert {"engine.streaming.predictor", "engine.training.loop", "engine.benchmarking.machine"} <= set(mods)
    assert module_name(REPO / "dataset" / "a" / "b" / "c.py") == "dataset.a.b.c"  # any depth
    assert module_name(REPO / "engine" / "a" / "__init__.py") == "engine.a"
    shared = ("engine", "engine.distributed", "engine.runs", "engine.model_builder")
    assert [m for m in mods if m.split(".")[0] == "engine" and engine_layer(m) == 0 and m not in shared] == []
    assert layer("engine.streaming.video_job") == (2, 4) and layer("engine.training.loop") == (2, 5)


def test_a_hand_made_upward_import_is_seen():
    graph = {"engine.teacher.cache": {"engine.training.loop"}, "engine.training.loop": {"engine.teacher.cache"}}
    assert [f"{a} -> {b}" for a, deps in graph.items() for b in deps if layer(b) > layer(a)] == [
        "engine.teacher.cache -> engine.training.loop"]


def test_every_engine_package_says_what_it_owns():
    """engine/ and each of its sub-packages has an ``__init__.py`` with a docstring."""
    folders = [REPO / "engine"] + [p for p in (REPO / "engine").rglob("*") if p.is_dir() and p.name != "__pycache__"]
    missing = [str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").is_file()
               or ast.get_docstring(ast.parse((f / "__init__.py").read_text())) is None]
    assert missing == []


@pytest.mark.slow
def test_the_documented_keyframe_policy_command_still_runs():
    """``python -m engine.keyframe_policy`` (the path the docs show) runs the moved module's command line."""
    from engine.keyframe_policy import main
    from engine.streaming.keyframe_policy import main as moved
    assert main is moved
    proc = subprocess.run([sys.executable, "-m", "engine.keyframe_policy", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "usage: python -m engine.keyframe_policy" in proc.stdout
