"""Two-process evaluation (torchrun, gloo, CPU) gives exactly the single-process metrics, with an odd
number of samples: the shards neither drop nor duplicate a sample."""
from __future__ import annotations

import pytest

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2

import main
from tests.test_eval_cli import cli, eval_dir, gt_files, make_env

pytestmark = pytest.mark.slow  # subprocess / torchrun runs

REPO = Path(__file__).resolve().parent.parent
NUM_VAL = 3  # odd: 2 ranks get 1 and 2 samples


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path, capsys):
    env = make_env(tmp_path, num_val=NUM_VAL)
    common = ["--resume", str(env["ckpt"]), "--eval-multi-step", "1", "2"]
    assert main.main(cli(env, *common, "--batch-size", "1", "--ResFolderName", "single")) == 0
    capsys.readouterr()
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           "main.py", *cli(env, *common, "--batch-size", "2", "--save-res", "1", "--ResFolderName", "dist")]
    run_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=run_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    single = json.loads((eval_dir(env, "single") / "metrics.json").read_text())
    double = json.loads((eval_dir(env, "dist") / "metrics.json").read_text())
    assert double["num_samples"] == {"0": NUM_VAL, "1": NUM_VAL, "2": NUM_VAL}
    assert double == single  # every count, IoU, avg and min identical
    assert json.loads((eval_dir(env, "dist") / "config.json").read_text())["world_size"] == 2
    assert proc.stdout.count("avg mIoU") == 1  # only rank 0 prints
    # both ranks' predictions reached the final folder: one labelIds PNG per GT frame and distance
    pred = env["logs"] / "pred_img_res" / "synthetic" / "swiftnet_test" / "dist"
    for k in (0, 1, 2):
        names = sorted(p.name for p in (pred / f"k{k}").glob("*_leftImg8bit.png"))
        expected = sorted(f"{c}_{s}_{f:06d}_leftImg8bit.png" for _, c, s, f in gt_files(env["data"]))
        assert names == expected
        assert cv2.imread(str(pred / f"k{k}" / names[0]), cv2.IMREAD_UNCHANGED).shape == (64, 128)
