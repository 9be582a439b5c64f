"""The GSVNet pipeline against the official code's own output, and official-format checkpoints."""
from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.streaming.predictor import VideoPredictor
from models.checkpoints import gsvnet_checkpoint
from models.gsvnet import GSVNet, keyframe_size
from models.keyframe_spec import parse_spec
from tests.stand_in_weights import case_state_dicts, save_official_gsvnet
from utils.checkpoint import save_atomic

DATA = Path(__file__).parent / "data"
REAL_CKPT = DATA / "gsvnet_swnet_seq_checkpoint.pth.tar"


@pytest.fixture(scope="module")
def case_a_files(case_a, tmp_path_factory):
    """The fixture's stand-in weights written in the official formats (raw SwiftNet, GSVNet .pth.tar)."""
    folder = tmp_path_factory.mktemp("case_a")
    sds = case_state_dicts(case_a)
    torch.save(sds["segnet"], folder / "cityscapes-swnet-R18.pt")
    save_official_gsvnet(sds["gsv"], sds["flow"], folder / "gsvnet_swnet_r18.tar")
    save_official_gsvnet(sds["gsv"], sds["flow"], folder / "gsvnet_legacy.tar", legacy=True)
    return folder, sds


def _run(predictor: VideoPredictor, frames: np.ndarray):
    outs = [predictor.step(f) for f in frames]
    return torch.stack([o.logits.cpu() for o in outs]), [o.is_keyframe for o in outs], outs


@pytest.mark.parametrize("ckpt_name", ["gsvnet_swnet_r18.tar", "gsvnet_legacy.tar"])
def test_parity_with_official_code_case_a(case_a, case_a_files, ckpt_name):
    folder, _ = case_a_files
    p = VideoPredictor.from_checkpoints(
        segnet="swiftnet", flow="light", num_classes=19, segnet_weights=str(folder / "cityscapes-swnet-R18.pt"),
        checkpoint=str(folder / ckpt_name), key_interval=case_a["key_interval"], key_scale=case_a["key_scale"],
        device="cpu")
    logits, keys, outs = _run(p, case_a["frames"].numpy())
    expected = case_a["expected_logits"]
    assert keys == case_a["is_keyframe"].tolist() == [True, False, False, True]
    for t in range(len(keys)):
        tol = 1e-3 * max(1.0, expected[t].abs().max().item())
        assert (logits[t] - expected[t]).abs().max().item() <= tol, f"frame {t}"
        assert torch.equal(logits[t].argmax(1), expected[t].argmax(1)), f"argmax differs on frame {t}"
    # labels are the full-resolution argmax of the bilinearly upsampled logits
    assert outs[1].labels.shape == (128, 256) and outs[1].labels.dtype == np.uint8


def test_round_trip_random_official_files(tmp_path):
    """Random weights saved in the official formats load through the public API; keyframes at 0 and 3."""
    model = GSVNet.build(parse_spec("swiftnet"), "light", 19)
    torch.save(model.segnet.state_dict(), tmp_path / "swnet.pt")
    save_official_gsvnet(OrderedDict(("grm." + k, v) for k, v in model.gsv.state_dict().items()),
                         model.flow_net.state_dict(), tmp_path / "gsvnet.tar")
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 64, 96, 3), dtype=np.uint8)
    results = []
    for _ in range(2):
        p = VideoPredictor.from_checkpoints(segnet_weights=str(tmp_path / "swnet.pt"),
                                            checkpoint=str(tmp_path / "gsvnet.tar"), key_interval=3)
        logits, keys, _ = _run(p, frames)
        assert keys == [True, False, False, True]
        assert torch.isfinite(logits).all() and logits.shape == (4, 1, 19, 8, 12)
        results.append(logits)
    assert torch.equal(results[0], results[1])


def test_bisenet_official_format_loads(tmp_path):
    model = GSVNet.build(parse_spec("bisenet"), "light", 19)
    torch.save({"model": model.segnet.state_dict()}, tmp_path / "bisenet.pth")
    p = VideoPredictor.from_checkpoints(segnet="bisenet", segnet_weights=str(tmp_path / "bisenet.pth"),
                                        checkpoint=None, key_interval=2)
    assert torch.equal(p.model.segnet.state_dict()["heads.2.conv_1x1.weight"],
                       model.segnet.state_dict()["heads.2.conv_1x1.weight"])
    out = p.step(np.zeros((64, 128, 3), np.uint8))
    assert out.is_keyframe and out.logits.shape == (1, 19, 8, 16)


def test_real_third_party_checkpoint_loads_and_runs():
    """Legacy pickle, no 'args', float32 num_batches_tracked: loads strictly and changes the output."""
    frames = np.random.default_rng(1).integers(0, 256, size=(3, 128, 256, 3), dtype=np.uint8)
    torch.manual_seed(0)
    p = VideoPredictor.from_checkpoints(checkpoint=str(REAL_CKPT), key_interval=3, fold_bn=False)
    sd = p.model.gsv.state_dict()
    assert sd["intra_net.intra_net.1.num_batches_tracked"].dtype == torch.int64
    assert sd["intra_net.intra_net.1.num_batches_tracked"].item() == 259656
    assert torch.allclose(p.model.flow_net.state_dict()["toflow.bias"], torch.tensor([0.0672, -0.3237]), atol=1e-4)
    torch.manual_seed(0)
    random_gsv = VideoPredictor.from_checkpoints(checkpoint=None, key_interval=3, fold_bn=False)
    random_gsv.model.segnet.load_state_dict(p.model.segnet.state_dict())  # same keyframes, random GSV + flow
    trained, _, _ = _run(p, frames)
    rand, _, _ = _run(random_gsv, frames)
    assert torch.isfinite(trained).all()
    assert torch.equal(trained[0], rand[0])             # keyframe: same segnet
    assert (trained[1] - rand[1]).abs().max() > 1e-3    # propagated: the trained modules matter


def test_wrong_checkpoint_fails_with_key_list(tmp_path):
    model = GSVNet.build(parse_spec("swiftnet"), "light", 19)
    sd = model.gsv.state_dict()
    sd.pop("guide.guide_decoder.0.bias")
    sd["guide.extra"] = torch.zeros(1)
    save_official_gsvnet(OrderedDict(("grm." + k, v) for k, v in sd.items()), model.flow_net.state_dict(),
                         tmp_path / "bad.tar")
    with pytest.raises(ValueError, match=r"(?s)bad\.tar.*missing keys.*guide_decoder\.0\.bias.*unexpected.*guide\.extra"):
        VideoPredictor.from_checkpoints(checkpoint=str(tmp_path / "bad.tar"))
    with pytest.raises(ValueError, match="trained for 19 classes"):
        VideoPredictor.from_checkpoints(checkpoint=str(REAL_CKPT), num_classes=11)


def test_our_checkpoint_round_trip_carries_segnet(tmp_path):
    model = GSVNet.build(parse_spec("swiftnet"), "light", 11, intra=False)
    ckpt = gsvnet_checkpoint(model.gsv, model.flow_net, segnet_state_dict=model.segnet.state_dict(),
                             config={"segnet": "swiftnet"}, epoch=3)
    save_atomic(ckpt, tmp_path / "ours.pth.tar")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing random is left: no warning
        p = VideoPredictor.from_checkpoints(num_classes=11, checkpoint=str(tmp_path / "ours.pth.tar"),
                                            fold_bn=False)  # the loaded weights themselves, not BN-folded
    for name, ours in model.state_dict().items():
        assert torch.equal(p.model.state_dict()[name], ours), name


def test_new_frame_size_starts_a_keyframe_and_reset():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = VideoPredictor.from_checkpoints(key_interval=5)
    a, b = np.zeros((64, 96, 3), np.uint8), np.zeros((72, 96, 3), np.uint8)
    assert [p.step(f).is_keyframe for f in (a, a, b, b)] == [True, False, True, False]
    p.reset()
    assert p.step(b).is_keyframe
    with pytest.raises(ValueError, match="uint8"):
        p.step(np.zeros((8, 8, 3), np.float32))


def test_keyframe_size_convention():
    assert keyframe_size(1024, 2048, 0.75) == (768, 1536)
    assert keyframe_size(721, 961, 0.75) == (540, 720)  # H//4*3, the official rounding
    assert keyframe_size(720, 960, 0.5) == (360, 480)


def test_parameter_counts_match_the_official_models():
    from models.gsvnet import parameter_counts
    swift = parameter_counts(GSVNet.build(parse_spec("swiftnet"), "light", 19))
    assert (swift["segnet"], swift["flow_net"], swift["gsv"]) == (11_797_071, 186_402, 210_085)
    assert round(swift["segnet"] / 1e6, 1) == 11.8 and round(swift["gsv"] / 1e6, 2) == 0.21
    assert round(swift["flow_net"] / 1e6, 2) == 0.19
    bise = parameter_counts(GSVNet.build(parse_spec("bisenet"), "flownet", 19))
    assert bise["segnet"] == 13_494_777 and round(bise["segnet"] / 1e6, 1) == 13.5
    assert bise["flow_net"] == 38_676_514


@pytest.mark.parametrize("segnet,native", [("swiftnet", (180, 320)), ("bisenet", (90, 160))])
def test_1280x720_frames_through_both_keyframe_nets(segnet, native):
    """Native logits at 1/4 (SwiftNet) or 1/8 (BiSeNet) of the input, 1/8 of the frame after the
    pipeline; a 90×160 grid is not a multiple of 4, so the GSV's padded guide path runs."""
    torch.manual_seed(0)
    model = GSVNet.build(parse_spec(segnet), "light", 19).eval()
    frame = torch.rand(1, 3, 720, 1280) * 255
    with torch.inference_mode():
        assert model.segnet_logits(frame, 1.0).shape[-2:] == native
        assert model.keyframe(frame, 0.75).shape == (1, 19, 90, 160)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = VideoPredictor(model, key_interval=2)
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 720, 1280, 3), dtype=np.uint8)
    outs = [p.step(f) for f in frames]
    assert [o.is_keyframe for o in outs] == [True, False]
    assert outs[1].logits.shape == (1, 19, 90, 160) and outs[1].labels.shape == (720, 1280)
    assert torch.isfinite(outs[1].logits).all()


def test_flownet_start_weights_load_non_strictly_and_report_mismatches(tmp_path):
    from models.checkpoints import load_flow_weights
    from models.flownet import FlowNetS
    source = FlowNetS()
    sd = source.state_dict()
    sd.pop("predict_flow2.bias")
    sd["extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": sd}, tmp_path / "flownet.pth.tar")
    target = FlowNetS()
    with pytest.warns(UserWarning, match=r"predict_flow2\.bias.*extra\.weight"):
        load_flow_weights(target, str(tmp_path / "flownet.pth.tar"))
    assert torch.equal(target.state_dict()["conv1.0.weight"], source.state_dict()["conv1.0.weight"])
