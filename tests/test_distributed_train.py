"""Multi-process training on CPU (gloo): `torchrun` and `python -m torch.distributed.launch`.

A small wrapper (written to a temp folder) runs main.main under torchrun and, after training, dumps
each rank's trained parameters, so the test can check that DDP kept the ranks identical.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.gsv import GSV
from models.swiftnet import SwiftNet
from utils.checkpoint import load_file

pytestmark = pytest.mark.slow  # subprocess / torchrun runs

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 300

WRAPPER = r'''
import os, sys
import torch
sys.path.insert(0, os.environ["GSVNET_REPO"])
import engine.training.propagation as trainer
import main as cli

seen = {}
real = trainer.train_one_epoch


def spy(ctx, epoch, state):
    seen["ctx"], seen["state"] = ctx, state
    return real(ctx, epoch, state)


trainer.train_one_epoch = spy
if os.environ.get("GSVNET_FAIL_RANK") == os.environ["RANK"]:  # simulate a corrupt file on one rank only
    from dataset.cityscapes import CityscapesSequence

    def broken(self, index):
        raise FileNotFoundError("simulated unreadable frame on rank " + os.environ["RANK"])
    CityscapesSequence.__getitem__ = broken
code = cli.main(sys.argv[1:])
if code:
    sys.exit(code)
ctx = seen["ctx"]
params = {f"{part}.{n}": p.detach().clone() for part in ("flow_net", "gsv")
          for n, p in getattr(ctx.model, part).named_parameters()}
torch.save({"params": params, "batch_size": {k: dl.batch_size for k, dl in ctx.loaders.items()},
            "world_size": int(os.environ["WORLD_SIZE"]), "steps": seen["state"].step,
            "wrapped": type(ctx.train_model.gsv).__name__},
           os.path.join(os.environ["GSVNET_DUMP"], "rank%s.pt" % os.environ["RANK"]))
sys.exit(code)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun() -> list[str]:
    exe = Path(sys.executable).parent / "torchrun"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "torch.distributed.run"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, synthetic_data):
    root = tmp_path_factory.mktemp("dist")
    (root / "data").symlink_to(synthetic_data(num_train=4, num_val=1, height=64, width=128, num_frames=4,
                                              gt_index=2), target_is_directory=True)
    torch.manual_seed(0)
    torch.save(SwiftNet(19).state_dict(), root / "swnet.pt")
    return root


def train_args(root: Path, logs: Path, name: str, *extra: str) -> list[str]:
    return ["--dataset", "synthetic", "--data-path", str(root / "data"), "--log-folder", str(logs),
            "--segnet-weights", str(root / "swnet.pt"), "--checkname", name, "--crop-height", "64",
            "--crop-width", "128", "--batch-size", "4", "--num-worker", "0", "--eval-multi-step", "1",
            "--max-eval-samples", "1", "--epoch", "1", "--device", "cpu", *extra]


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    full_env.pop("WORLD_SIZE", None)
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=TIMEOUT)


def test_torchrun_two_ranks_stay_identical(setup, tmp_path):
    script = tmp_path / "wrapper.py"
    script.write_text(WRAPPER)
    logs = tmp_path / "logs"
    cmd = torchrun() + ["--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                        str(script)] + train_args(setup, logs, "ddp", "--multi-step", "1", "2", "--max-iters", "2")
    proc = run(cmd, GSVNET_REPO=str(REPO), GSVNET_DUMP=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    dumps = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for d in dumps:
        assert d["world_size"] == 2 and d["steps"] == 2
        assert d["batch_size"] == {1: 2, 2: 2}  # global --batch-size 4 split over 2 processes
        assert d["wrapped"] == "DistributedDataParallel"
    assert dumps[0]["params"].keys() == dumps[1]["params"].keys()
    for name, p in dumps[0]["params"].items():
        assert torch.equal(p, dumps[1]["params"][name]), f"ranks differ in {name}"
    folder = logs / "run" / "synthetic" / "swiftnet_ddp"
    ckpt = load_file(folder / "checkpoint.pth.tar")
    for name, p in dumps[0]["params"].items():
        part, key = name.split(".", 1)
        saved = ckpt["state_dict"]["grm." + key] if part == "gsv" else ckpt["state_dict_of"][key]
        assert torch.equal(saved, p), name
    # only rank 0 logs: one epoch record, not one per rank
    events = [json.loads(line)["event"] for line in (folder / "log.jsonl").read_text().splitlines()]
    assert events.count("epoch") == 1 and events.count("val") == 1
    assert json.loads((folder / "config.json").read_text())["world_size"] == 2


def test_a_failing_rank_stops_the_other(setup, tmp_path):
    script = tmp_path / "wrapper.py"
    script.write_text(WRAPPER)
    cmd = torchrun() + ["--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                        str(script)] + train_args(setup, tmp_path / "logs", "fail", "--multi-step", "1")
    proc = run(cmd, GSVNET_REPO=str(REPO), GSVNET_DUMP=str(tmp_path), GSVNET_FAIL_RANK="1")
    assert proc.returncode != 0  # and no hang: subprocess.run would time out
    assert "[rank 1] error: simulated unreadable frame on rank 1" in proc.stderr
    assert not (tmp_path / "logs" / "run" / "synthetic" / "swiftnet_fail" / "checkpoint.pth.tar").exists()


def test_torch_distributed_launch_spelling_starts(setup, tmp_path):
    logs = tmp_path / "logs"
    cmd = [sys.executable, "-m", "torch.distributed.launch", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "main.py"] + train_args(setup, logs, "launch", "--multi-step", "1",
                                                                    "--max-iters", "1")
    proc = run(cmd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = logs / "run" / "synthetic" / "swiftnet_launch"
    assert load_file(folder / "checkpoint.pth.tar")["step"] == 1
    assert json.loads((folder / "config.json").read_text())["world_size"] == 2


def gsv_bn_buffers(ckpt: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in ckpt["state_dict"].items() if k.endswith(("running_mean", "running_var"))}


@pytest.mark.parametrize("freeze", [1, 0])
def test_freeze_bn_holds_under_two_processes(setup, tmp_path, freeze):
    """--freeze-bn 1 keeps the GSV's BN statistics at their start values under DDP (the mode set on the
    wrapped modules is the one forward_clip sees); --freeze-bn 0 moves them (the test can fail)."""
    logs = tmp_path / "logs"
    cmd = torchrun() + ["--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                        "main.py"] + train_args(setup, logs, "fbn", "--multi-step", "1", "--max-iters", "2",
                                                "--freeze-bn", str(freeze))
    proc = run(cmd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    start = {"grm." + k: v for k, v in GSV(19).state_dict().items()}  # BN starts at mean 0, var 1
    saved = gsv_bn_buffers(load_file(logs / "run" / "synthetic" / "swiftnet_fbn" / "checkpoint.pth.tar"))
    assert saved, "the GSV has BatchNorm layers"
    moved = [k for k, v in saved.items() if not torch.equal(v, start[k])]
    assert (moved == []) if freeze else len(moved) == len(saved), moved
