"""The one predictor-model interface (models/propagation_model.py): both models name it and define all of it
themselves, GSVNet's ``evaluating`` restores the mode it found, and the streaming and deployment code never
probes a model with getattr/hasattr."""
from __future__ import annotations

import ast
from pathlib import Path

import torch

from engine.deployment.onnx_runtime import OnnxGSVNet
from models.gsvnet import GSVNet
from models.propagation_model import PropagationModel
from models.keyframe_spec import parse_spec

REPO = Path(__file__).resolve().parents[1]
MEMBERS = ("num_classes", "takes_uint8_frames", "frame_sizes", "keyframe", "lowres_bgr", "propagate",
           "forward_clip", "evaluating")


def test_protocol_members_are_what_the_test_checks():
    declared = set(PropagationModel.__annotations__) | {
        n for n, v in vars(PropagationModel).items() if callable(v) and not n.startswith("_")}
    assert declared == set(MEMBERS)


def test_both_models_name_the_protocol_and_define_every_member():
    for cls in (GSVNet, OnnxGSVNet):
        assert PropagationModel in cls.__bases__, cls
        for name in MEMBERS[3:]:  # methods: their own, not the protocol's empty bodies
            assert getattr(cls, name) is not getattr(PropagationModel, name), (cls, name)
    assert (GSVNet.takes_uint8_frames, GSVNet.frame_sizes, OnnxGSVNet.takes_uint8_frames) == (False, None, True)
    for fake in ("train", "eval", "to", "to_channels_last", "training"):  # no faked nn.Module behaviour
        assert not hasattr(OnnxGSVNet, fake), fake


def test_gsvnet_evaluating_restores_the_mode_it_found():
    model = GSVNet.build(parse_spec("swiftnet"), "light", 5)
    for mode in (True, False):
        model.train(mode)
        with model.evaluating() as inside:
            assert inside is model and not model.training and not model.gsv.training
        assert model.training is mode and model.gsv.training is mode
        assert not model.segnet.training  # the frozen keyframe net stays in eval mode either way
    model.train()
    try:
        with model.evaluating():
            raise KeyError("inside")
    except KeyError:
        pass
    assert model.training


def _probes(source: str) -> list[int]:
    """Lines of getattr/hasattr calls on something named like a model."""
    calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")]
    return [c.lineno for c in calls if "model" in ast.unparse(c.args[0]).lower()]


def test_no_getattr_probing_of_a_model():
    assert _probes("x = getattr(self.model, 'frame_sizes', None)\ny = hasattr(frame, 'shape')") == [1]
    files = [REPO / "engine" / "streaming" / "predictor.py", REPO / "engine" / "streaming" / "video_job.py",
             *sorted((REPO / "engine" / "deployment").glob("*.py")), REPO / "engine" / "evaluation" / "protocol.py",
             REPO / "engine" / "evaluation" / "consistency.py"]
    assert {f.name: _probes(f.read_text()) for f in files} == {f.name: [] for f in files}
