"""The keyframe-net spec is parsed once, where a string enters: ``parse_spec`` (models/keyframe_spec.py) is called
only from the edge modules listed here, found by walking every code file's syntax tree; everything between takes
the parsed ``KeyframeNetSpec``. A call anywhere else fails this test."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from config.config import Config, parse_args, to_dict
from models.keyframe_spec import DEFAULT_SPEC, KeyframeNetSpec, parse_spec, spec_dirname

REPO = Path(__file__).resolve().parents[1]
CODE = ("tools", "modes", "engine", "config", "models", "dataset", "utils")
EDGES = {
    "config/config.py": "the CLI: the Config built from --segnet",
    "models/keyframe_spec.py": "the parser's own module: the default spec, an hf: weights folder given by name",
    "models/checkpoints.py": "checkpoint reading: model_args and saved configs name the net as a string",
    "engine/streaming/predictor.py": "the public Python API: VideoPredictor.from_checkpoints(segnet=...)",
    "engine/streaming/keyframe_policy.py": "its own command line (python -m engine.keyframe_policy --segnet)",
    "tools/footage.py": "its command line's --segnet, for run folder names",
    "tools/keyframes.py": "its command line's --nets, for run folder names",
}


def parse_calls(source: str) -> list[int]:
    """Lines that call parse_spec (by name or as an attribute)."""
    return [node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == "parse_spec")
        or (isinstance(node.func, ast.Attribute) and node.func.attr == "parse_spec"))]


def callers() -> dict[str, list[int]]:
    files = [REPO / "main.py"] + [p for folder in CODE for p in sorted((REPO / folder).rglob("*.py"))]
    found = {str(p.relative_to(REPO)): parse_calls(p.read_text()) for p in files}
    return {name: lines for name, lines in found.items() if lines}


def test_the_walk_finds_calls_in_every_form():
    source = "from models import keyframe_spec as k\nk.parse_spec('a')\nx = parse_spec(s)\nparse_spec\n"
    assert parse_calls(source) == [2, 3]


def test_the_parser_is_called_only_at_the_edges():
    found = callers()
    assert len(found) > 3  # the walk reached the code
    outside = {name: lines for name, lines in found.items() if name not in EDGES}
    assert outside == {}, "parse_spec called outside the edges; pass the KeyframeNetSpec down instead"
    assert set(found) == set(EDGES)  # every listed edge still parses (else drop it from the list)


def test_config_holds_the_parsed_spec_and_writes_the_string():
    cfg = parse_args(["--segnet", " torchvision:fcn_resnet50 "])
    assert cfg.segnet == KeyframeNetSpec("torchvision:fcn_resnet50", "torchvision", "fcn_resnet50")
    assert to_dict(cfg)["segnet"] == "torchvision:fcn_resnet50" and str(cfg.segnet) == "torchvision:fcn_resnet50"
    assert parse_args([]).segnet is DEFAULT_SPEC and Config(segnet="pidnet_m").segnet.is_pidnet
    assert dataclasses.replace(cfg, seed=4).segnet == cfg.segnet  # an already parsed spec passes through
    assert spec_dirname(cfg.segnet) == "torchvision-fcn_resnet50"
    with pytest.raises(SystemExit, match="--segnet: keyframe net spec 'resnet': unknown keyframe net name"):
        parse_args(["--segnet", "resnet"])
