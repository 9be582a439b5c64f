"""`make footage` (tools/footage.py, tools/footage_report.py) and the `--classes` option of
`python -m dataset.clip_folders` it relies on: the class table, the report writers from hand-made results,
and a --quick run end to end on the real clips (slow)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import cv2
import pytest

from config.cityscapes import CLASS_NAMES, PALETTE
from config.folder import folder_preset
from dataset import clip_folders
from dataset.folder import read_classes
from engine.teacher.cache import TeacherCache
from tests.test_folder_dataset import write_mp4
from tools import footage, footage_report


# ------------------------------------------------------------------ --classes cityscapes
def test_cityscapes_class_table_matches_the_preset():
    assert clip_folders.CITYSCAPES_NAMES == CLASS_NAMES
    assert tuple(map(tuple, clip_folders.classes_json("cityscapes")["colors"])) == PALETTE
    with pytest.raises(ValueError, match="unknown class set"):
        clip_folders.classes_json("camvid")


def test_classes_option_writes_classes_json_once_and_refuses_other_content(tmp_path, capsys):
    write_mp4(tmp_path / "drive.mp4", 4)
    out = tmp_path / "mine"
    argv = [str(tmp_path / "drive.mp4"), "--out", str(out), "--no-progress", "--classes", "cityscapes"]
    assert clip_folders.main(argv + ["--split", "train"]) == 0
    classes = read_classes(out)
    assert classes.names == CLASS_NAMES and classes.colors == PALETTE and classes.ignore_index == 255
    assert folder_preset(str(out)).num_classes == 19 and "next:" not in capsys.readouterr().out
    stamp = (out / "classes.json").stat().st_mtime_ns
    assert clip_folders.main(argv + ["--split", "val"]) == 0  # the same content: left as it is
    assert (out / "classes.json").stat().st_mtime_ns == stamp
    other = {"names": ["a", "b"], "colors": [[0, 0, 0], [9, 9, 9]]}
    (out / "classes.json").write_text(json.dumps(other))
    assert clip_folders.main(argv + ["--split", "test"]) == 1  # refused before any clip is decoded
    assert "classes.json already exists" in capsys.readouterr().err and not (out / "test").exists()
    assert json.loads((out / "classes.json").read_text()) == other
    assert clip_folders.main(argv + ["--split", "test", "--overwrite"]) == 0
    assert read_classes(out).names == CLASS_NAMES and len(list((out / "test" / "drive" / "origin").iterdir())) == 4
    assert not list(out.glob(".*partial"))


# ------------------------------------------------------------------ the report from hand-made results
def metrics(per_k: dict, l3, tc_parts, frames=120, refresh_pairs=39) -> dict:
    tc = None if tc_parts is None else {
        "miou": tc_parts[0], "frames": frames, "snippets": 1, "pairs": frames - 1,
        "refresh": {"miou": tc_parts[1], "pairs": refresh_pairs},
        "propagated": None if tc_parts[2] is None else {"miou": tc_parts[2], "pairs": frames - 1 - refresh_pairs}}
    return {"per_distance": {k: {"miou": v} for k, v in per_k.items()},
            "intervals": {"3": {"avg_miou": l3[0], "min_miou": l3[1]}} if l3 else {},
            "num_samples": {k: 120 - int(k) for k in per_k}, "temporal_consistency": tc}


def test_table_cells_from_hand_made_results():
    per = {"0": 100.0, "1": 91.25, "2": 88.0, "3": 86.5, "4": 85.0}
    results = {footage_report.KEYFRAME_ROW: metrics({"0": 100.0}, None, (80.0, 80.0, None), refresh_pairs=119),
               "GSVNet": metrics(per, (93.1, 88.0), (90.5, 84.25, 93.5)),
               "warp-only": metrics(per, (92.0, 87.0), (89.0, 83.0, 92.0)),
               "copy": metrics(per, (90.0, 85.0), (95.0, 82.0, 99.0))}
    ms = {"keyframe": 40.0, "gsv": 5.0, "warp": 2.5, "copy": 0.5}
    rates = {"ms": ms, "size": [144, 176], "repeats": 20,
             "fps": {footage_report.KEYFRAME_ROW: 1000 / 40.0, "GSVNet": 3000 / 50.0, "warp-only": 3000 / 45.0,
                     "copy": 3000 / 41.0}}
    lines = footage_report.table(results, rates)
    assert lines[2] == ("| keyframe net (every frame) | 100.0 | — | — | — | — | — | 80.0 | 80.0 | — | 1.00 | "
                        "25.00 |")
    # keyframes 0, 3, ..., 117 of 120 frames: 39 refresh pairs + the first frame = 40 keyframes
    assert lines[3] == ("| GSVNet | 100.0 | 91.2 | 88.0 | 86.5 | 85.0 | 93.1 / 88.0 | 90.5 | 84.2 | 93.5 | 0.33 | "
                        "60.00 |")
    assert lines[5].endswith("| 95.0 | 82.0 | 99.0 | 0.33 | 73.17 |")
    text = "\n".join(footage_report.notes(results, rates))
    assert "k=4: 116 scored frames" in text and "keyframe 40.0 ms, non-keyframe GSVNet 5.0 / warp-only 2.5" in text
    assert "144×176" in text and "not right" in text and "80.0 for the keyframe net" in text


# ------------------------------------------------------------------ options
def test_quick_runs_keep_to_their_own_folders_and_bad_options_stop_before_work(tmp_path, capsys):
    full, quick = footage.parse_args([]), footage.parse_args(["--quick", "--logs", str(tmp_path)])
    assert (full.out, full.data, full.prefix, full.prop_budget) == ("results", "data/footage", "footage", 200.0)
    assert quick.out == str(tmp_path / "footage_quick") and quick.data == str(tmp_path / "footage_quick_data")
    assert quick.prefix == "footage_quick" and quick.prop_budget == quick.segnet_budget == 1.0
    assert quick.command == f"python -m tools.footage --quick --logs {tmp_path}"
    for argv, words in ((["--segnet-weights", str(tmp_path / "none.pt")], "no such file"),
                        (["--prop-budget-seconds", "0"], "must be > 0")):
        with pytest.raises(SystemExit):
            footage.parse_args(argv)
        assert words in capsys.readouterr().err


# ------------------------------------------------------------------ end to end
def frames_of(root: Path, split: str) -> dict[str, list[Path]]:
    return {clip.name: sorted((clip / "origin").iterdir()) for clip in sorted((root / split).iterdir())}


@pytest.mark.slow
def test_quick_run_end_to_end_on_the_real_clips(tmp_path):
    logs = tmp_path / "logs"
    assert footage.main(["--quick", "--logs", str(logs)]) == 0
    out, data = logs / "footage_quick", logs / "footage_quick_data"
    md = (out / "footage.md").read_text()
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in md.splitlines()
             if line.startswith("| ")]
    rows = {c[0]: c[1:] for c in cells}  # k=0..4, l=3, TC, refresh, propagated, keyframes/frame, frames/s
    assert set(rows) == {"method", "keyframe net (every frame)", "GSVNet", "warp-only", "copy"}
    assert rows["keyframe net (every frame)"][:2] == ["100.0", "—"] and rows["GSVNet"][0] == "100.0"
    assert rows["keyframe net (every frame)"][9] == "1.00" and rows["GSVNet"][9] == "0.38"  # keyframes 0, 3, 6 of 8
    assert "--quick run" in md and "python -m dataset.clip_folders" in md and "--pseudo-labels 1" in md
    ms = re.search(r"keyframe ([\d.]+) ms, non-keyframe GSVNet ([\d.]+) / warp-only ([\d.]+) / copy ([\d.]+) ms", md)
    key, *nonkey = (float(x) for x in ms.groups())
    assert float(rows["keyframe net (every frame)"][10]) == pytest.approx(1000 / key, rel=0.02, abs=0.01)
    for row, t in zip(("GSVNet", "warp-only", "copy"), nonkey):  # l = 3: one keyframe and two non-keyframes
        assert float(rows[row][10]) == pytest.approx(3000 / (key + 2 * t), rel=0.02, abs=0.01)
    evals = logs / "run" / "folder" / "swiftnet_footage_quick_heldout"
    kf = json.loads((evals / "eval_footage_keyframe" / "metrics.json").read_text())
    gsv = json.loads((evals / "eval_footage_gsv" / "metrics.json").read_text())
    assert kf["reference"] == gsv["reference"] == "teacher" and kf["per_distance"]["0"]["miou"] == 100.0
    assert gsv["num_samples"] == {"0": 8, "1": 7, "2": 6, "3": 5, "4": 4}  # every frame with k predecessors
    assert gsv["temporal_consistency"]["frames"] == 8 and gsv["key_interval"] == 3
    # the strip: 3 rows × 4 tiles of the 144×176 frames enlarged 2× (to >= 240 rows), 20-px captions, 4-px gaps
    factor = math.ceil(240 / 144)
    assert cv2.imread(str(out / "footage.png")).shape == (3 * (144 * factor + 20) + 2 * 4, 4 * 176 * factor + 3 * 4, 3)
    # the held-out clip never reached training: its own root; the training run's teacher saw exactly the
    # training frames with a predecessor (k = 1, 2) and the validation frames, the evaluation's exactly the held-out
    train, val, held = (frames_of(data / "train", "train"), frames_of(data / "train", "val"),
                        frames_of(data / "heldout", "val"))
    assert sorted(train) == ["bigbuckbunny", "bikes"] and list(val) == ["bikes"] and list(held) == ["carphone_pristine"]
    assert [len(f) for f in train.values()] == [4, 4] and len(held["carphone_pristine"]) == 8
    for run, frames in (("swiftnet_footage_quick", [p for f in train.values() for p in f[1:]] + val["bikes"]),
                        ("swiftnet_footage_quick_heldout", held["carphone_pristine"])):
        caches = list((logs / "run" / "folder" / run / "teacher_cache").iterdir())
        assert len(caches) == 1
        cache = TeacherCache(caches[0].parent, caches[0].name, 0.75)
        assert sorted(cache.folder.glob("*.png")) == sorted(cache.label_file(p) for p in frames)
