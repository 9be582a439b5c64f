"""The whole-clip consistency pass of ``--evaluate 1`` (engine/evaluation/consistency.py: TC split into refresh and
propagated pairs, mVC) against an independent computation, and the scene-cut experiment's building blocks
(tools/cut_experiment.py).

Reference: every frame of each snippet read here with OpenCV, the model driven step by step under the fixed
schedule (keyframe net on frames 0, l, 2l, ..., propagation between; or every frame a keyframe), labels by a
plain bilinear upsample + argmax, the generator's flow, validity and per-frame labels read from the extras,
then utils.temporal_consistency.TemporalConsistency per pair kind and utils.video_consistency.video_consistency
(the window-by-window definition, independent of the streaming form the pass uses)."""
from __future__ import annotations

import json
import math
import re

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import main
from config.config import parse_args
from engine.runs import preset_of
from engine.evaluation.consistency import evaluate_consistency
from models.gsvnet import GSVNet
from models.keyframe_spec import parse_spec
from tools import cut_experiment as cx
from utils.temporal_consistency import TemporalConsistency
from utils.video_consistency import video_consistency

GT_RE = re.compile(r"(?P<city>[a-z]+)_(?P<seq>\d{6})_(?P<frame>\d{6})_gtFine_labelIds\.png$")
DATA = dict(num_val=2, num_frames=10, gt_index=5)   # 10-frame snippets: VC_8 has 2 windows, VC_16 none


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GSVNet.build(parse_spec("swiftnet"), "light", 19).eval()


def rgb(data, city: str, stem: str) -> torch.Tensor:
    path = data / "leftImg8bit_sequence" / "val" / city / f"{stem}_leftImg8bit.png"
    return torch.from_numpy(cv2.imread(str(path))[:, :, ::-1].copy()).permute(2, 0, 1)[None].float()


def snippet_stems(data, num_frames: int, gt_index: int) -> list[list[str]]:
    """The stems of every frame of each val snippet, in the evaluator's order (sorted annotated frames)."""
    out = []
    for gt in sorted((data / "gtFine" / "val").glob("*/*_gtFine_labelIds.png")):
        m = GT_RE.search(gt.name)
        first = int(m["frame"]) - gt_index
        out.append([f"{m['city']}_{m['seq']}_{f:06d}" for f in range(first, first + num_frames)])
    return out


def reference_labels(model, data, stems: list[str], l: int, fusion: str, keyframe_only: bool) -> list[np.ndarray]:
    frames = [rgb(data, s.split("_")[0], s) for s in stems]
    logits = []
    with torch.no_grad():
        for t, x in enumerate(frames):
            logits.append(model.keyframe(x, 0.75) if t % l == 0 or keyframe_only else model.propagate(
                logits[-1], model.lowres_bgr(frames[t - 1]), model.lowres_bgr(x), fusion))
    size = tuple(frames[0].shape[-2:])
    return [F.interpolate(x, size=size, mode="bilinear", align_corners=True).argmax(1)[0].numpy() for x in logits]


def reference(model, data, l: int = 3, fusion: str = "gsv", keyframe_only: bool = False, num_frames: int = 10,
              gt_index: int = 5) -> dict:
    """{"refresh"/"propagated"/"pooled": TemporalConsistency result, "excluded": 1 − mean validity of all
    pairs, "vc8"/"vc16": VC per clip against the generator's per-frame labels}."""
    tcs = {p: TemporalConsistency(19) for p in ("refresh", "propagated", "pooled")}
    valid_sum, pixels, vcs = 0, 0, {8: [], 16: []}
    for stems in snippet_stems(data, num_frames, gt_index):
        labels = reference_labels(model, data, stems, l, fusion, keyframe_only)
        folder = data / "extras" / "val" / stems[0].split("_")[0]
        for t in range(1, len(stems)):
            flow = np.load(folder / f"{stems[t]}_flow.npy").astype(np.float32)
            valid = cv2.imread(str(folder / f"{stems[t]}_valid.png"), cv2.IMREAD_UNCHANGED) > 0
            part = "refresh" if keyframe_only or t % l == 0 else "propagated"
            for name in (part, "pooled"):
                tcs[name].add(labels[t - 1], labels[t], flow, valid)
            valid_sum, pixels = valid_sum + int(valid.sum()), pixels + valid.size
        gts = [cv2.imread(str(folder / f"{s}_trainIds.png"), cv2.IMREAD_UNCHANGED) for s in stems]
        for n in vcs:
            vcs[n].append(video_consistency(labels, gts, n))
    return {**{p: tc.result() for p, tc in tcs.items()}, "excluded": 1 - valid_sum / pixels,
            "vc8": vcs[8], "vc16": vcs[16]}


def check_part(got: dict | None, expected: dict, pairs: int) -> None:
    if pairs == 0:
        assert got is None
        return
    assert got["pairs"] == expected["pairs"] == pairs
    for key in ("miou", "miou_unmasked", "excluded_fraction"):
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key


def check_tc(got: dict, ref: dict, frames: int, snippets: int, refresh: int, propagated: int) -> None:
    """got: metrics.json's "temporal_consistency"; refresh / propagated: the pair counts worked out by hand."""
    assert got["flow"] == "true" and got["frames"] == frames and got["snippets"] == snippets
    assert got["pairs"] == refresh + propagated == frames - snippets     # every consecutive pair of every clip
    check_part(got, ref["pooled"], refresh + propagated)
    check_part(got["refresh"], ref["refresh"], refresh)
    check_part(got["propagated"], ref["propagated"], propagated)
    # with the true flow a pixel is excluded exactly when the generator marks it invalid
    assert got["excluded_fraction"] == pytest.approx(ref["excluded"], abs=1e-12)
    assert 0 < got["miou"] < 100 and 0 < got["excluded_fraction"] < 0.5


def direct(model, data, *flags: str, **kwargs) -> dict:
    cfg = parse_args(["--evaluate", "1", "--dataset", "synthetic", "--data-path", str(data), "--batch-size", "1",
                      "--num-worker", "0", "--device", "cpu", *flags])
    return evaluate_consistency(model, cfg, preset_of(cfg), "cpu", key_scale=0.75, progress=False, **kwargs)


def test_tc_and_mvc_equal_an_independent_computation(synthetic_data, model):
    data = synthetic_data(**DATA)
    got, ref = direct(model, data, fusion="gsv"), reference(model, data, 3, "gsv")
    # l = 3 on 10 frames: keyframes 0, 3, 6, 9, so per clip 3 pairs end on a keyframe and 9 − 3 = 6 do not
    assert got["key_interval"] == 3
    check_tc(got["temporal_consistency"], ref, frames=20, snippets=2, refresh=2 * 3, propagated=2 * 6)
    # refresh pairs are where the labels jump: the random propagation drifts, the keyframe net does not follow
    tc = got["temporal_consistency"]
    assert tc["refresh"]["miou"] != pytest.approx(tc["propagated"]["miou"])
    # mVC: the synthetic data are labelled on every frame; 10 frames give VC_8 two windows and VC_16 none
    assert got["mvc8"] == pytest.approx(np.mean(ref["vc8"]), abs=1e-9) and 0 < got["mvc8"] < 100
    assert all(math.isnan(v) for v in ref["vc16"]) and got["mvc16"] is None


def test_key_interval_sets_the_schedule(synthetic_data, model):
    data = synthetic_data(num_val=1, num_frames=4, gt_index=2)
    got = direct(model, data, "--key-interval", "2", fusion="warp")
    ref = reference(model, data, 2, "warp", num_frames=4, gt_index=2)
    assert got["key_interval"] == 2      # keyframes 0, 2: pair (1, 2) refreshes, (0, 1) and (2, 3) propagate
    check_tc(got["temporal_consistency"], ref, frames=4, snippets=1, refresh=1, propagated=2)
    assert got["mvc8"] is None and got["mvc16"] is None        # 4 frames: no window of 8 (+ 1) frames


def test_dis_flow_path_matches_dis_on_the_frames(synthetic_data, model, monkeypatch):
    """Off the synthetic dataset the flow is DIS (+ forward-backward check) on the full-resolution frames."""
    import engine.evaluation.consistency as te
    from utils.optical_flow import dis_backward_flow
    data = synthetic_data(num_val=2, num_frames=7, gt_index=5)
    monkeypatch.setattr(te, "flow_source", lambda preset: "dis")
    got = direct(model, data, fusion="copy")["temporal_consistency"]
    expected = TemporalConsistency(19)
    for stems in snippet_stems(data, 7, 5):
        labels = reference_labels(model, data, stems, 3, "copy", False)   # copy: each keyframe's labels, held
        images = [rgb(data, s.split("_")[0], s)[0].permute(1, 2, 0).numpy().astype(np.uint8) for s in stems]
        for t in range(1, 7):
            expected.add(labels[t - 1], labels[t], *dis_backward_flow(images[t - 1], images[t]))
    ref = expected.result()
    assert got["flow"] == "dis" and got["pairs"] == 12 and got["refresh"]["pairs"] == 4
    for key in ("miou", "miou_unmasked", "excluded_fraction"):
        assert got[key] == pytest.approx(ref[key], abs=1e-9), key
    assert got["excluded_fraction"] > 0.01      # the forward-backward check does exclude pixels


def test_each_dis_pair_is_computed_once(synthetic_data):
    import engine.evaluation.consistency as te
    from config.presets import get_preset
    from dataset.whole_clips import whole_clips
    data = synthetic_data(num_val=2, num_frames=7, gt_index=5)
    clips = whole_clips(get_preset("synthetic"), "val", str(data))
    frames = te.ClipFrames(clips, [0, 1, 0], "dis", str(data), "val")
    assert len(frames) == 3 * 7
    first = [frames[i] for i in range(7)]
    assert first[0]["flow"] is None and first[0]["t"] == 0 and first[0]["frame"].shape == (3, 64, 128)
    assert first[1]["flow"].shape == (64, 128, 2) and first[1]["valid"].shape == (64, 128)
    repeat = [frames[i] for i in range(7, 21)]
    assert frames._cache.computed == 12           # 2 clips × 6 pairs; the repeated clip came from the cache
    for a, b in zip(first[1:], repeat[8:]):
        np.testing.assert_array_equal(a["flow"], b["flow"])


def test_shards_pool_to_the_single_process_sums(synthetic_data, model, monkeypatch):
    """Two ranks' accumulators (what the one all-reduce adds) sum to the single process's, VC bits included."""
    import engine.evaluation.consistency as te
    data, packed = synthetic_data(**DATA), []
    monkeypatch.setattr(te.dist, "all_reduce_sum", lambda t: packed.append(t.clone()) or t)
    whole = direct(model, data, fusion="warp")
    monkeypatch.setattr(te.dist, "world_size", lambda: 2)
    for rank in (0, 1):
        monkeypatch.setattr(te.dist, "rank", lambda rank=rank: rank)
        direct(model, data, fusion="warp")
    assert len(packed) == 3
    torch.testing.assert_close(packed[1] + packed[2], packed[0], rtol=0, atol=0)
    vc_bits = packed[1][-4:], packed[2][-4:]      # 2 clips × (VC_8, VC_16): each rank fills only its own clip
    assert (vc_bits[0][2:] == 0).all() and (vc_bits[1][:2] == 0).all() and (vc_bits[0][:2] != 0).all()
    assert whole["temporal_consistency"]["pairs"] == 18


@pytest.fixture(scope="module")
def segnet_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("tc_weights") / "swnet.pt"
    torch.save(model.segnet.state_dict(), path)
    return path


def run_cli(data, segnet_file, tmp_path, name: str, *extra: str) -> tuple[dict, str]:
    argv = ["--evaluate", "1", "--dataset", "synthetic", "--data-path", str(data), "--segnet-weights",
            str(segnet_file), "--log-folder", str(tmp_path), "--num-worker", "0", "--device", "cpu",
            "--batch-size", "1", "--ResFolderName", name, *extra]
    assert main.main(argv) == 0
    folder = tmp_path / "run" / "synthetic" / "swiftnet_test" / f"eval_{name}"
    return json.loads((folder / "metrics.json").read_text()), (folder / "metrics.json").read_text()


@pytest.mark.parametrize("flags,fusion,keyframe_only", [
    (["--fusion", "copy", "--eval-multi-step", "1"], "copy", False),
    (["--keyframe-only", "1"], "copy", True)])                # every frame a keyframe: the flicker baseline
def test_cli_reports_tc_in_metrics_and_table(synthetic_data, model, segnet_file, tmp_path, capsys, flags, fusion,
                                             keyframe_only):
    data = synthetic_data(**DATA)
    metrics, _ = run_cli(data, segnet_file, tmp_path, "tc", *flags)
    out = capsys.readouterr().out
    l = 1 if keyframe_only else 3
    ref = reference(model, data, l, fusion, keyframe_only)
    tc = metrics["temporal_consistency"]
    assert set(tc) == {"miou", "miou_unmasked", "excluded_fraction", "flow", "frames", "pairs", "snippets",
                       "refresh", "propagated"}
    check_tc(tc, ref, frames=20, snippets=2, refresh=18 if keyframe_only else 6, propagated=0 if keyframe_only else 12)
    assert metrics["key_interval"] == l and metrics["mvc8"] == pytest.approx(np.mean(ref["vc8"]), abs=1e-9)
    assert metrics["mvc16"] is None
    assert set(metrics) >= {"per_distance", "intervals", "temporal_consistency", "key_interval", "mvc8", "mvc16"}
    printed = re.search(rf"^TC \(%\) +([0-9.]+) +\(2 whole clips, 20 frames, l={l}, true flow; all in-frame pixels "
                        r"([0-9.]+)", out, re.M)
    assert printed and [float(v) for v in printed.groups()] == [round(tc["miou"], 1), round(tc["miou_unmasked"], 1)]
    refresh = re.search(r"^  refresh +([0-9.]+) +\((\d+) pairs", out, re.M)
    assert refresh and (float(refresh[1]), int(refresh[2])) == (round(tc["refresh"]["miou"], 1), tc["refresh"]["pairs"])
    assert re.search(r"^  propagated +" + (r"- +\(0 pairs" if keyframe_only else r"[0-9.]+ +\(12 pairs"), out, re.M)
    assert re.search(rf"^mVC8 / mVC16 \(%\) +{metrics['mvc8']:.1f} / -", out, re.M)


def test_cli_without_tc_writes_null(synthetic_data, segnet_file, tmp_path, capsys):
    metrics, text = run_cli(synthetic_data(**DATA), segnet_file, tmp_path, "no_tc", "--keyframe-only", "1",
                            "--temporal-consistency", "0")
    assert metrics["temporal_consistency"] is None and '"temporal_consistency": null' in text
    assert "mvc8" not in metrics and metrics["key_interval"] == 1     # mVC comes from the same pass
    out = capsys.readouterr().out
    assert "TC (%)" not in out and "mVC" not in out


# ------------------------------------------------------------------ the scene-cut experiment
def test_cut_clips_really_cut(synthetic_data):
    data = synthetic_data(num_val=2, num_frames=6, gt_index=4)
    snippets = cx.snippet_stems(str(data))
    assert [len(s) for s in snippets] == [6, 6] and snippets[0][0] != snippets[1][0]
    clips = cx.cut_clips(snippets, before=3, after=2)
    assert [c["pair"] for c in clips] == [(0, 1), (1, 0)]
    four = cx.cut_clips([["a0", "a1"], ["b0", "b1"], ["c0", "c1"], ["d0", "d1"]], before=1, after=2, followers=2)
    assert [c["pair"] for c in four] == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 0), (3, 0), (3, 1)]
    assert four[5]["stems"] == ["c1", "a0", "a1"] and four[5]["cut"] == 1
    first = clips[0]
    assert first["stems"] == snippets[0][-3:] + snippets[1][:2] and first["cut"] == 3
    read = [cv2.imread(str(cx.frame_path(data, "val", s))) for s in first["stems"]]
    before_gap = np.abs(read[2].astype(int) - read[1].astype(int)).mean()     # consecutive, same snippet
    cut_gap = np.abs(read[3].astype(int) - read[2].astype(int)).mean()        # across the cut
    assert cut_gap > 3 * before_gap
    np.testing.assert_array_equal(cx.true_labels(str(data), "val", first["stems"][3]),
                                  cv2.imread(str(data / "extras" / "val" / first["stems"][3].split("_")[0]
                                                  / f"{first['stems'][3]}_trainIds.png"), cv2.IMREAD_UNCHANGED))


def test_schedules_on_hand_made_scores():
    scores = [None, 0.05, 0.5, 0.05, 0.05, 0.05, 0.05]
    assert cx.schedule("fixed", scores) == [True, False, False, True, False, False, True]
    assert cx.schedule("adaptive", scores) == [True, False, True, False, False, True, False]
    assert cx.schedule("every frame", scores) == [True] * 7


def test_bikes_keyframes_near_cuts_and_extra_triggers():
    scores = [0.05] * 99                                   # 100 frames; scores[i-1] = pair (i-1, i)
    for frame, score in ((30, 0.6), (50, 0.3), (76, 0.4)):
        scores[frame - 1] = score
    got = cx.bikes_keyframes(scores, cuts=(30, 76))
    # adaptive: 0, 3, ..., 48, 50 (trigger), 53, ..., 74, 76 (cut), 79, ...
    assert got["near"] == {30: [30], 76: [74, 76]} and got["extra"] == [50]
    assert got["fixed_since_key"] == {30: 0, 76: 1}
    # fixed 0..99 step 3; adaptive 17 (0..48) + 50 + 8 (53..74) + 76 + 7 (79..97): the extra keyframes
    # restart the count, so the two triggers cost nothing here
    assert got["keys"] == {"fixed": 34, "adaptive": 34} and got["max_uncut"] == pytest.approx(0.3)


def test_cut_experiment_keyframe_decisions_on_a_tiny_case(synthetic_data, model):
    data = synthetic_data(num_val=2, num_frames=6, gt_index=4)
    clips = cx.cut_clips(cx.snippet_stems(str(data)), before=3, after=3)    # 3 frames of a, then 3 of b
    with torch.no_grad():
        got = cx.cut_experiment(model, str(data), "val", clips)
    # 6 + 5 + 4 frames per clip, fixed keys 2 + 2 + 2; the cut (index 3) falls 0, 2, 1 frames after a key
    assert got["frames"] == 30 and got["key_rate"]["fixed"] == pytest.approx(12 / 30)
    assert [len(v) for v in got["miou"].values()] == [3, 3, 3]
    assert got["key_rate"]["every frame"] == 1.0 and got["key_on_cut"]["fixed"] == pytest.approx(1 / 3)
    assert all(s > cx.SCORE_THRESHOLD for s in got["cut_scores"])   # 0.58 and 0.62 on this data
    assert got["key_on_cut"]["adaptive"] == 1.0
    # every frame a keyframe: j=0 is the keyframe net on b's first frame, scored here independently
    cm = np.zeros((19, 19), np.int64)
    for clip in clips:
        stem = clip["stems"][clip["cut"]]
        x = rgb(data, stem.split("_")[0], stem)
        with torch.no_grad():
            pred = F.interpolate(model.keyframe(x, 0.75), size=x.shape[-2:], mode="bilinear",
                                 align_corners=True).argmax(1)[0].numpy()
        truth = cx.true_labels(str(data), "val", stem).astype(np.int64)
        keep = truth != 255
        cm += 3 * np.bincount(19 * truth[keep] + pred[keep], minlength=361).reshape(19, 19)  # 3 starts
    tp, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
    assert got["miou"]["every frame"][0] == pytest.approx(100 * np.mean(tp[union > 0] / union[union > 0]), abs=1e-9)
    # the adaptive schedule re-keys on the cut: its first frame after the cut is the l = 1 prediction
    assert got["miou"]["adaptive"][0] == pytest.approx(got["miou"]["every frame"][0], abs=1e-9)
    assert got["miou"]["fixed"][0] != pytest.approx(got["miou"]["every frame"][0], abs=1e-3)
