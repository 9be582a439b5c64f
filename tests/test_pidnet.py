"""Tests for PIDNet as a keyframe net: models/pidnet.py, models/pidnet_weights.py, engine/training/pidnet_loss.py.

Layouts are checked against the official key lists (tests/data/pidnet/keys_pidnet_{s,m,l}.json, taken
from the official model definitions); numbers against the logits the official code produced for
stand-in weights (tests/data/pidnet/case_pidnet_s_final_state.pt, seed 21), against OpenCV's Canny
for the edge labels, and against loss values worked out by hand.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from engine.training.pidnet_loss import (CITYSCAPES_CLASS_WEIGHTS, boundary_targets, ohem_cross_entropy, pidnet_loss,
                                         weighted_boundary_bce)
from models.pidnet import HEAD_PREFIXES, PIDNET_MEAN, PIDNET_STD, build_pidnet
from models.pidnet_weights import load_pidnet_weights
from tests.stand_in_weights import fingerprint, make_state_dict, read_keys

DATA = Path(__file__).parent / "data" / "pidnet"
CASE_S = DATA / "case_pidnet_s_final_state.pt"
SEED = 21
LOSS_BUFFER = "sem_loss.criterion.weight"
BACKBONE_MODULES = ("conv1.", "layer1.", "layer2.", "layer3.", "layer4.", "layer5.")  # a stand-in part


# ----------------------------------------------------------------------------- helpers (importable)

def official_keys(variant: str) -> list[tuple[str, tuple[int, ...], str]]:
    """[(key, shape, dtype)] of the official training-form state_dict of PIDNet-<variant>."""
    return read_keys(f"pidnet/keys_pidnet_{variant}.json")


@lru_cache(maxsize=3)
def stand_in_state_dict(variant: str, seed: int = SEED) -> "OrderedDict[str, torch.Tensor]":
    """Deterministic stand-in weights of the whole training-form network (the fixture's recipe)."""
    return make_state_dict(official_keys(variant), seed)


def write_official_pidnet_file(path, variant: str, layout: str, seed: int = SEED) -> Path:
    """Stand-in weights written as the official code writes them.

    layout: "released" (FullModel state_dict: "model."-prefixed network + loss buffer),
    "training_checkpoint" ({'epoch', 'best_mIoU', 'state_dict': released, 'optimizer'}),
    "imagenet_backbone" ({'state_dict': unprefixed keys of a part of the network}), "plain" (ours).
    """
    sd = stand_in_state_dict(variant, seed)
    full_model = OrderedDict(("model." + k, v) for k, v in sd.items())
    full_model[LOSS_BUFFER] = torch.linspace(0.8, 1.2, 19)
    if layout == "released":
        obj = full_model
    elif layout == "training_checkpoint":
        obj = {"epoch": 484, "best_mIoU": 0.5, "state_dict": full_model, "optimizer": {"state": {}}}
    elif layout == "imagenet_backbone":
        obj = {"state_dict": OrderedDict((k, v) for k, v in sd.items() if k.startswith(BACKBONE_MODULES))}
    elif layout == "plain":
        obj = OrderedDict(sd)
    else:
        raise ValueError(layout)
    torch.save(obj, path)
    return Path(path)


def normalise_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 T×H×W×3 RGB -> float T×3×H×W, (rgb/255 - mean) / std with ImageNet statistics."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(PIDNET_MEAN).view(1, 3, 1, 1)) / torch.tensor(PIDNET_STD).view(1, 3, 1, 1)


def assert_parity(logits: torch.Tensor, expected: torch.Tensor) -> None:
    """The fixture's bar: max|diff| <= 1e-3·max(1, max|expected|), argmax equal on >= 99.5 % of pixels."""
    bound = 1e-3 * max(1.0, expected.abs().max().item())
    assert (logits - expected).abs().max().item() <= bound
    assert (logits.argmax(1) == expected.argmax(1)).float().mean().item() >= 0.995


def _layout(model) -> list[tuple[str, tuple[int, ...], str]]:
    return [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]


@pytest.fixture(scope="module")
def case_s():
    return torch.load(CASE_S, map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------- layouts

@pytest.mark.parametrize("variant, total", [("s", 479), ("m", 479), ("l", 545)])
def test_key_layouts_equal_the_official_lists(variant, total):
    keys = official_keys(variant)
    assert len(keys) == total and sum(k.startswith(HEAD_PREFIXES) for k, _, _ in keys) == 26
    assert _layout(build_pidnet(variant, 19, augment=True)) == keys
    assert _layout(build_pidnet(variant, 19)) == [e for e in keys if not e[0].startswith(HEAD_PREFIXES)]


def test_stand_in_weights_reproduce_the_fixture_fingerprint(case_s):
    assert case_s["keylist"] == "keys_pidnet_s.json" and case_s["seed"] == SEED
    assert fingerprint(stand_in_state_dict("s")) == case_s["fingerprint"]


# ----------------------------------------------------------------------------- parity and forms

def test_parity_case_s_released_file(tmp_path, case_s):
    path = write_official_pidnet_file(tmp_path / "PIDNet_S_Cityscapes_val.pt", "s", "released")
    model = build_pidnet("s", case_s["num_classes"]).eval()
    report = load_pidnet_weights(model, str(path))
    assert (report.layout, report.loaded, report.missing) == ("released", 453, [])
    assert len(report.dropped) == 27 and report.dropped[-1] == LOSS_BUFFER
    assert all(k.startswith(("model.seghead_p.", "model.seghead_d.")) for k in report.dropped[:-1])
    expected = case_s["expected_logits"][:, 0]                      # T×19×32×64
    with torch.no_grad():
        logits = model(normalise_frames(case_s["frames"]))
    assert logits.shape == expected.shape
    assert_parity(logits, expected)


def test_training_form_returns_three_outputs_and_the_same_main_logits(tmp_path):
    path = write_official_pidnet_file(tmp_path / "released.pt", "s", "released")
    infer, train = build_pidnet("s", 19).eval(), build_pidnet("s", 19, augment=True)
    load_pidnet_weights(infer, str(path))
    report = load_pidnet_weights(train, str(path))
    assert (report.loaded, report.dropped) == (479, [LOSS_BUFFER])
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        main = infer(x)
        outs_eval = train.eval()(x)
        outs_train = train.train()(x)  # (updates BN statistics, so it runs last)
    torch.testing.assert_close(outs_eval[1], main, rtol=0, atol=0)
    for outs in (outs_eval, outs_train):  # the list form in eval and in train mode, as officially
        assert isinstance(outs, list)
        assert [tuple(o.shape) for o in outs] == [(2, 19, 8, 12), (2, 19, 8, 12), (2, 1, 8, 12)]


# ----------------------------------------------------------------------------- file layouts

@pytest.mark.parametrize("layout", ["training_checkpoint", "plain"])
def test_other_full_layouts_load_every_network_key(tmp_path, layout):
    path = write_official_pidnet_file(tmp_path / "w.pth", "s", layout)
    model = build_pidnet("s", 19)
    report = load_pidnet_weights(model, str(path))
    assert (report.layout, report.loaded, report.missing) == (layout, 453, [])
    assert len(report.dropped) == (27 if layout == "training_checkpoint" else 26)
    sd = stand_in_state_dict("s")
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())


def test_imagenet_backbone_loads_only_with_the_partial_flag(tmp_path):
    path = write_official_pidnet_file(tmp_path / "PIDNet_S_ImageNet.pth.tar", "s", "imagenet_backbone")
    model = build_pidnet("s", 19, augment=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="allow_partial_backbone") as err:
        load_pidnet_weights(model, str(path))
    assert str(path) in str(err.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing loaded
    report = load_pidnet_weights(model, str(path), allow_partial_backbone=True)
    n_backbone = sum(k.startswith(BACKBONE_MODULES) for k, _, _ in official_keys("s"))
    assert (report.layout, report.loaded, len(report.missing)) == ("imagenet_backbone", n_backbone, 479 - n_backbone)
    sd, after = stand_in_state_dict("s"), model.state_dict()
    assert all(torch.equal(after[k], sd[k] if k.startswith(BACKBONE_MODULES) else before[k]) for k in after)


def test_m_file_into_s_model_is_refused_with_counts(tmp_path):
    path = write_official_pidnet_file(tmp_path / "PIDNet_M_Cityscapes_val.pt", "m", "released")
    for augment, text in ((False, "363 of 453 model keys have another shape"),
                          (True, "378 of 479 model keys have another shape")):
        model = build_pidnet("s", 19, augment=augment)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(ValueError) as err:
            load_pidnet_weights(model, str(path))
        message = str(err.value)
        assert str(path) in message and text in message
        assert "conv1.0.weight (file (64, 3, 3, 3), model (32, 3, 3, 3))" in message
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_missing_key_and_unreadable_files_are_refused(tmp_path):
    path = write_official_pidnet_file(tmp_path / "released.pt", "s", "released")
    obj = torch.load(path, weights_only=True)
    del obj["model.spp.scale0.2.weight"]
    torch.save(obj, tmp_path / "cut.pt")
    with pytest.raises(ValueError, match=r"1 of 453 model keys are missing from the file: spp\.scale0\.2\.weight"):
        load_pidnet_weights(build_pidnet("s", 19), str(tmp_path / "cut.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt"):
        load_pidnet_weights(build_pidnet("s", 19), str(tmp_path / "junk.pt"))
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_pidnet_weights(build_pidnet("s", 19), str(tmp_path / "absent.pt"))


@pytest.mark.parametrize("variant", ["m", "l"])
def test_m_and_l_load_their_files_and_run_at_360x640(tmp_path, variant):
    path = write_official_pidnet_file(tmp_path / f"PIDNet_{variant.upper()}.pt", variant, "released")
    model = build_pidnet(variant, 19).eval()
    report = load_pidnet_weights(model, str(path))
    assert report.loaded == len(official_keys(variant)) - 26 and len(report.dropped) == 27
    x = torch.randn(1, 3, 360, 640, generator=torch.Generator().manual_seed(1))  # 360/64 = 5.625
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (1, 19, 45, 80) and torch.isfinite(logits).all()


# ----------------------------------------------------------------------------- loss

def test_boundary_of_a_two_class_step_is_a_hand_made_band():
    label = torch.zeros(1, 16, 16, dtype=torch.long)
    label[:, :, 8:] = 1                       # a vertical step between columns 7 and 8
    expected = torch.zeros(1, 16, 16)
    # Canny keeps column 7 (the first pixel of the step); the 6-px frame leaves rows 6..9; the 4×4
    # dilation (offsets -2..1) widens that to rows 5..11 and columns 6..9.
    expected[:, 5:12, 6:10] = 1.0
    torch.testing.assert_close(boundary_targets(label), expected, rtol=0, atol=0)


def test_boundary_targets_match_opencv_on_random_label_maps():
    cv2 = pytest.importorskip("cv2")
    import numpy as np
    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = (int(s) for s in rng.integers(14, 48, size=2))
        label = np.zeros((h, w), np.uint8)
        for value in rng.choice([1, 7, 18, 255], size=4):
            cv2.circle(label, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(2, 15)),
                       int(value), -1)
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            label[y:y + int(rng.integers(1, h)), x:x + int(rng.integers(1, w))] = value
        edge = cv2.Canny(label, 0.1, 0.2)      # the official dataset's recipe, step by step
        edge = np.pad(edge[6:-6, 6:-6], ((6, 6), (6, 6)), mode="constant")
        official = (cv2.dilate(edge, np.ones((4, 4), np.uint8), iterations=1) > 50).astype(np.float32)
        ours = boundary_targets(torch.from_numpy(label).long()[None])[0].numpy()
        np.testing.assert_array_equal(ours, official)


def _onehot_logits(target: torch.Tensor, classes: int, margin: float) -> torch.Tensor:
    return margin * F.one_hot(target, classes).permute(0, 3, 1, 2).float()


def test_loss_of_perfect_outputs_is_near_zero():
    target = torch.zeros(1, 24, 24, dtype=torch.long)
    target[:, 6:18, 4:20] = 2
    edges = boundary_targets(target)
    d = (100.0 * (2 * edges - 1)).unsqueeze(1)   # confident and right everywhere
    main = _onehot_logits(target, 3, 50.0)
    loss, parts = pidnet_loss([main, main, d], target, class_weights=None)
    assert edges.sum() > 0 and loss.item() < 1e-6 and parts["guided"] < 1e-6


def test_loss_hand_computed_with_uniform_logits():
    """Zero logits: every CE is ln 2 per valid pixel (2 classes), the BCE ln 2 per pixel."""
    target = torch.tensor([[[0, 1, 255, 1], [0, 0, 1, 1]]])          # 8 pixels, 1 ignored
    boundary = torch.tensor([[[0, 1, 1, 0], [0, 0, 0, 0]]], dtype=torch.float32)  # 2 of 8 positive
    zeros = torch.zeros(1, 2, 2, 4)
    weights = torch.tensor([0.5, 2.0])
    loss, parts = pidnet_loss([zeros, zeros, torch.zeros(1, 1, 2, 4)], target, class_weights=weights,
                              boundary=boundary)
    ln2 = math.log(2.0)
    aux = ln2 * (3 * 0.5 + 4 * 2.0) / 8                 # weighted pixel losses over ALL 8 pixels
    bce = ln2 * (2 * 6 / 8 + 6 * 2 / 8) / 8             # positives weigh 6/8, negatives 2/8
    assert parts["aux"] == pytest.approx(aux, rel=1e-6)
    assert parts["main"] == pytest.approx(ln2, rel=1e-6)  # a weighted mean of equal losses
    assert parts["boundary"] == pytest.approx(bce, rel=1e-6)
    assert parts["guided"] == 0.0                          # sigmoid(0) = 0.5 selects nothing
    assert loss.item() == pytest.approx(0.4 * aux + ln2 + 20 * bce, rel=1e-6)


def test_guided_term_uses_only_pixels_where_sigmoid_d_exceeds_08():
    target = torch.zeros(1, 1, 6, dtype=torch.long)
    main = torch.zeros(1, 2, 1, 6)
    main[0, 1, 0, :3] = 2.0        # wrong by a margin of 2 on the selected pixels
    main[0, 1, 0, 3:] = 9.0        # wrong by 9 where d does not reach the threshold
    s = torch.tensor([0.95, 0.9, 0.81, 0.79, 0.5, 0.1])
    d = torch.log(s / (1 - s)).view(1, 1, 1, 6)
    _, parts = pidnet_loss([main, main, d], target, class_weights=None, boundary=torch.zeros(1, 1, 6))
    assert parts["guided"] == pytest.approx(math.log1p(math.exp(2.0)), rel=1e-6)
    assert parts["main"] == pytest.approx((3 * math.log1p(math.exp(2.0)) + 3 * math.log1p(math.exp(9.0))) / 6,
                                          rel=1e-6)


def test_ohem_keeps_the_hard_pixels_of_the_official_rule():
    probs = torch.tensor([0.95, 0.5, 0.2, 0.99])              # true-class probabilities (class 0)
    logits = torch.stack([torch.log(probs / (1 - probs)), torch.zeros(4)]).view(1, 2, 1, 4)
    target = torch.zeros(1, 1, 4, dtype=torch.long)
    nll = -torch.log(probs)
    # min_kept 1: threshold max(0.5, 0.9) = 0.9 keeps 0.5 and 0.2
    got = ohem_cross_entropy(logits, target, None, 255, thresh=0.9, min_kept=1)
    torch.testing.assert_close(got, nll[1:3].mean())
    # min_kept 3: threshold max(0.99, 0.9) = 0.99 keeps all but the 0.99 pixel
    got = ohem_cross_entropy(logits, target, None, 255, thresh=0.9, min_kept=3)
    torch.testing.assert_close(got, nll[:3].mean())


def test_boundary_bce_is_symmetric_under_swapping_classes_and_logit_signs():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(2, 1, 5, 7, generator=g)
    edges = (torch.rand(2, 5, 7, generator=g) > 0.7).float()
    torch.testing.assert_close(weighted_boundary_bce(d, edges), weighted_boundary_bce(-d, 1 - edges))


def test_gradients_reach_all_three_heads():
    torch.manual_seed(0)
    model = build_pidnet("s", 19, augment=True).train()
    x = torch.randn(2, 3, 64, 64)
    target = torch.randint(0, 19, (2, 8, 8)).repeat_interleave(8, 1).repeat_interleave(8, 2)
    target[:, :4] = 255
    outputs = model(x)
    loss, parts = pidnet_loss(outputs, target, class_weights=torch.tensor(CITYSCAPES_CLASS_WEIGHTS))
    loss.backward()
    assert math.isfinite(parts["loss"]) and parts["boundary"] > 0
    for head in ("seghead_p", "final_layer", "seghead_d"):
        grad = getattr(model, head).conv2.weight.grad
        assert grad is not None and grad.abs().sum() > 0, head


def test_pidnet_trains_with_its_official_class_weights_and_the_others_with_the_presets():
    """PIDNet's Cityscapes config weights (0.84–1.15) on Cityscapes-class data, none on CamVid or with
    --class-weights 0; SwiftNet keeps the preset's GSVNet weights (3.0–48.2 on Cityscapes)."""
    from config.config import Config
    from config.presets import get_preset
    from engine.training.pidnet_loss import CITYSCAPES_CLASS_WEIGHTS
    from engine.training.segnet import keyframe_class_weight
    cpu = torch.device("cpu")
    for name in ("synthetic", "cityscapes"):
        preset = get_preset(name)
        w = keyframe_class_weight(Config(segnet="pidnet_s", dataset=name), preset, cpu)
        assert w.tolist() == pytest.approx(list(CITYSCAPES_CLASS_WEIGHTS))
        assert 0.83 < float(w.min()) and float(w.max()) < 1.16
        assert keyframe_class_weight(Config(segnet="pidnet_m", dataset=name, class_weights=False), preset, cpu) is None
        swift = keyframe_class_weight(Config(segnet="swiftnet", dataset=name), preset, cpu)
        assert swift.tolist() == pytest.approx(list(preset.class_weights))
    camvid = get_preset("camvid")
    assert keyframe_class_weight(Config(segnet="pidnet_s", dataset="camvid"), camvid, cpu) is None
