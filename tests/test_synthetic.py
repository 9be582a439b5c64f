"""Synthetic dataset generator: layout, encodings, exact flow, motion, determinism, CLI safety."""
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label, name2label

import dataset.synthetic as syn
import dataset.synthetic_render as render_mod
import dataset.synthetic_scene as scene_mod

SMALL = dict(num_train=2, num_val=1, height=64, width=128, seed=0)   # 30 frames, GT at index 19
NAME = re.compile(r"^(?P<city>[a-z]+)_(?P<seq>\d{6})_(?P<frame>\d{6})_(?P<kind>.+)\.(png|npy)$")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "data"
    syn.generate(out, **SMALL, progress=False, workers=1)
    return out


def _read(path):
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file())


def _stems(root, top, split, city, suffix):
    return sorted(p.name[:-len(suffix)] for p in (root / top / split / city).glob(f"*{suffix}"))


def test_label_constants_are_cityscapes_ids():
    for const, name in [("EGO", "ego vehicle"), ("ROAD", "road"), ("SIDEWALK", "sidewalk"),
                        ("BUILDING", "building"), ("WALL", "wall"), ("FENCE", "fence"), ("POLE", "pole"),
                        ("LIGHT", "traffic light"), ("SIGN", "traffic sign"), ("VEGETATION", "vegetation"),
                        ("TERRAIN", "terrain"), ("SKY", "sky"), ("PERSON", "person"), ("CAR", "car"),
                        ("TRUCK", "truck"), ("BUS", "bus")]:
        assert getattr(scene_mod, const) == name2label[name].id, name
    assert name2label["sky"].trainId == 10 and name2label["sky"].color == (70, 130, 180)


def test_layout_and_frame_numbers(root):
    marker = json.loads((root / "synthetic.json").read_text())
    assert marker["complete"] and marker["params"] == dict(SMALL, num_frames=30, gt_index=19)
    assert syn.dataset_matches(root, **SMALL, num_frames=30, gt_index=19)
    assert not syn.dataset_matches(root, **dict(SMALL, seed=1), num_frames=30, gt_index=19)
    expected = {("train", "aldermoor"): [(0, 0)], ("train", "brackenfield"): [(0, 275)],
                ("val", "corrington"): [(0, 275)]}                 # (seq, first frame) per snippet
    for (split, city), snippets in expected.items():
        frames = _stems(root, "leftImg8bit_sequence", split, city, "_leftImg8bit.png")
        gts = _stems(root, "gtFine", split, city, "_gtFine_labelIds.png")
        want = [f"{city}_{seq:06d}_{first + t:06d}" for seq, first in snippets for t in range(30)]
        assert frames == want
        assert gts == [f"{city}_{seq:06d}_{first + 19:06d}" for seq, first in snippets]
        for stem in gts:                   # GT frame number parsed from the name, as loaders must
            gt_frame = int(NAME.match(stem + "_gtFine_labelIds.png")["frame"])
            assert f"{stem}_leftImg8bit.png" in {f"{s}_leftImg8bit.png" for s in frames}
            assert all(f"{city}_{stem.split('_')[1]}_{gt_frame - k:06d}" in frames for k in range(20))
            for kind in ("instanceIds", "color"):
                assert (root / "gtFine" / split / city / f"{stem}_gtFine_{kind}.png").is_file()
        for stem in frames:
            assert all(p.is_file() for p in syn.extras_paths(root, split, stem).values())
    assert int(gts[0].split("_")[-1]) == 294                        # frankfurt-like, GT != 19
    image = _read(root / "leftImg8bit_sequence/train/aldermoor/aldermoor_000000_000019_leftImg8bit.png")
    assert image.shape == (64, 128, 3) and image.dtype == np.uint8
    for path in _files(root):
        if path != "synthetic.json":
            assert NAME.match(Path(path).name), path


def test_label_encodings(root):
    instance_classes = {lab.id for lab in id2label.values() if lab.hasInstances}
    seen_instances = 0
    for gt in sorted(root.glob("gtFine/*/*/*_gtFine_labelIds.png")):
        split, stem = gt.parts[-3], gt.name[:-len("_gtFine_labelIds.png")]
        label_ids = _read(gt)
        assert label_ids.dtype == np.uint8 and label_ids.ndim == 2
        inst = _read(gt.with_name(f"{stem}_gtFine_instanceIds.png")).astype(np.int64)
        assert inst.dtype == np.int64 and inst.shape == label_ids.shape
        is_inst = inst >= 1000
        assert np.array_equal(np.where(is_inst, inst // 1000, inst), label_ids)
        assert set(np.unique(label_ids[is_inst]).tolist()) <= instance_classes
        assert not np.isin(label_ids[~is_inst], list(instance_classes)).any()   # every car/person pixel
        for cls in np.unique(inst[is_inst] // 1000):                             # numbered 0, 1, ...
            idx = np.unique(inst[is_inst & (inst // 1000 == cls)] % 1000)
            assert idx.tolist() == list(range(len(idx)))
            seen_instances += len(idx)
        colour = _read(gt.with_name(f"{stem}_gtFine_color.png"))[..., ::-1]
        want = np.array([id2label[int(i)].color for i in label_ids.ravel()], np.uint8).reshape(colour.shape)
        assert np.array_equal(colour, want)
        train_ids = _read(syn.extras_paths(root, split, stem)["train_ids"])
        lut = {i: (lab.trainId if 0 <= lab.trainId < 255 else 255) for i, lab in id2label.items()}
        assert np.array_equal(train_ids, np.vectorize(lut.get)(label_ids).astype(np.uint8))
    assert seen_instances > 0


def test_many_classes(root):
    present = set()
    for path in root.glob("extras/*/*/*_trainIds.png"):
        present |= set(np.unique(_read(path)).tolist())
    present.discard(255)
    assert len(present) >= 8, present


def _warp(image, flow, interpolation):
    """Independent backward warp: out(p) = image(p + flow(p))."""
    ys, xs = np.mgrid[0:flow.shape[0], 0:flow.shape[1]].astype(np.float32)
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], interpolation,
                     borderMode=cv2.BORDER_REPLICATE)


def test_flow_maps_each_frame_to_the_previous_one(root):
    agree, valid_share, err_flow, err_zero = [], [], [], []
    for split, city, first in [("train", "aldermoor", 0), ("train", "brackenfield", 275),
                               ("val", "corrington", 275)]:
        stem = lambda t: f"{city}_000000_{first + t:06d}"
        ex0 = syn.extras_paths(root, split, stem(0))
        assert not np.load(ex0["flow"]).any() and not _read(ex0["valid"]).any()   # first frame
        for t in range(1, 30, 4):
            ex, ex_prev = syn.extras_paths(root, split, stem(t)), syn.extras_paths(root, split, stem(t - 1))
            flow = np.load(ex["flow"])
            assert flow.shape == (64, 128, 2) and flow.dtype == np.float16
            flow = flow.astype(np.float32)
            valid = _read(ex["valid"]) > 0
            labels = _read(ex["train_ids"])
            warped = _warp(_read(ex_prev["train_ids"]), flow, cv2.INTER_NEAREST)
            agree.append((warped == labels)[valid].mean())
            valid_share.append(valid.mean())
            img = lambda s: _read(root / "leftImg8bit_sequence" / split / city
                                  / f"{s}_leftImg8bit.png").astype(np.float32)
            cur, prev = img(stem(t)), img(stem(t - 1))
            moving = valid & (np.hypot(flow[..., 0], flow[..., 1]) > 1.5)   # noise dominates elsewhere
            err_flow.append(np.abs(_warp(prev, flow, cv2.INTER_LINEAR) - cur).mean(-1)[moving])
            err_zero.append(np.abs(prev - cur).mean(-1)[moving])
    assert min(agree) >= 0.99
    assert np.mean(valid_share) > 0.85
    err_flow, err_zero = np.concatenate(err_flow).mean(), np.concatenate(err_zero).mean()
    assert err_flow < 6.0 and err_flow < 0.6 * err_zero, (err_flow, err_zero)


def test_backward_flow_matches_point_projection():
    rng = np.random.default_rng(3)
    scene = scene_mod.sample_scene(rng, 48, 96, 4)
    g = render_mod.render_geometry(scene, 2)
    flow, ahead = render_mod.backward_flow(scene, 2, g["obj"], g["depth"])
    vel = scene.obj["vel"]
    for v, u in [(40, 10), (40, 80), (30, 47), (20, 5), (25, 90)]:       # hand-picked pixels
        oid, z = g["obj"][v, u], g["depth"][v, u]
        if oid <= scene_mod.HOOD_OBJ:
            assert not flow[v, u].any()
            continue
        point = scene.cam[2] + z * np.array([(u - scene.cx) / scene.focal, (v - scene.cy) / scene.focal, 1.0])
        rel = point - vel[oid] - scene.cam[1]                         # where it was, seen from t-1
        expect = np.array([scene.cx + scene.focal * rel[0] / rel[2] - u,
                           scene.cy + scene.focal * rel[1] / rel[2] - v])
        np.testing.assert_allclose(flow[v, u], expect, atol=1e-3)


def test_motion_beats_copying_but_not_warping(root):
    assert syn.copy_baseline_miou(root, "train", 0) == pytest.approx(100.0)
    copy4 = syn.copy_baseline_miou(root, "train", 4)
    warp4 = syn.copy_baseline_miou(root, "train", 4, warp=True)
    assert copy4 < 90.0
    assert warp4 > copy4 + 4.0
    assert syn.copy_baseline_miou(root, "train", 1) > copy4


def test_deterministic_and_seeded(tmp_path, root):
    args = dict(SMALL, num_frames=5, gt_index=3, progress=False)
    syn.generate(tmp_path / "a", **args, workers=1)
    syn.generate(tmp_path / "b", **args, workers=2)                  # workers do not change bytes
    syn.generate(tmp_path / "c", **dict(args, seed=1), workers=1)
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b") and len(files) == 3 * 5 * 4 + 3 * 3 + 1
    read = lambda d, f: (tmp_path / d / f).read_bytes()
    assert all(read("a", f) == read("b", f) for f in files)
    images = [f for f in files if f.endswith("_leftImg8bit.png")]
    assert all(read("a", f) != read("c", f) for f in images)


def test_refuses_foreign_folder_and_replaces_own(tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    (foreign / "leftImg8bit_sequence").mkdir()
    (foreign / "leftImg8bit_sequence" / "real.png").write_bytes(b"not ours")
    tiny = dict(num_train=1, num_val=1, height=32, width=64, num_frames=3, gt_index=1, progress=False)
    with pytest.raises(RuntimeError, match="--overwrite"):
        syn.generate(foreign, **tiny)
    with pytest.raises(SystemExit, match="not empty"):
        syn.main(["--out", str(foreign), "--num-train", "1", "--num-val", "0", "--no-progress"])
    syn.generate(foreign, **tiny, overwrite=True)
    syn.generate(foreign, **tiny)                  # now it has a marker, but it is still not ours
    assert (foreign / "notes.txt").read_text() == "keep me" and syn.read_marker(foreign)["complete"]
    assert (foreign / "leftImg8bit_sequence" / "real.png").read_bytes() == b"not ours"
    own = tmp_path / "own"
    syn.generate(own, **dict(tiny, num_train=2))
    syn.generate(own, **tiny)                                          # previous dataset: replaced
    assert not list(own.glob("**/aldermoor_000001_*")) and syn.dataset_matches(own, **{
        k: v for k, v in tiny.items() if k != "progress"}, seed=0)
    argv = ["--out", str(own), "--num-train", "1", "--num-val", "1", "--height", "32", "--width", "64",
            "--num-frames", "3", "--gt-index", "1", "--skip-existing", "--no-progress"]
    syn.main(argv)
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(ValueError, match="gt_index"):
        syn.generate(tmp_path / "bad", **dict(tiny, gt_index=3))


def test_cli_help_covers_every_flag():
    parser = syn.build_parser()
    for action in parser._actions:
        assert action.help, action.dest
