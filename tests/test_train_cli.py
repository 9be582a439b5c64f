"""Training through the command line (main.main): keyframe-net stage, propagation training, resume,
atomic saves, non-finite loss, bad inputs, --intra 0 and the --pretrain-flow shortcut.

Runs on a tiny synthetic dataset (64×128, 2 train + 1 val snippets of 6 frames, annotation at 4).
"""
from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import engine.training.propagation as propagation_training
import engine.training.propagation as trainer
import main as cli
from utils.seed import seed_everything
from engine.training.flow_pretrain import dis_target_flow as dis_backward_flow, endpoint_error, lowres_flow
from engine.streaming.predictor import VideoPredictor
from models.bisenet import BiSeNet
from models.checkpoints import FORMAT, gsvnet_parts
from models.gsv import canonical_delay_kernels
from models.gsvnet import GSVNet
from models.swiftnet import SwiftNet
from models.keyframe_spec import parse_spec
from utils.checkpoint import load_file

RUN = ("run", "synthetic")


@pytest.fixture(scope="module")
def data(synthetic_data) -> Path:
    return synthetic_data()  # the default tiny set (conftest.TINY)


def args(data: Path, logs: Path, name: str, *extra: str) -> list[str]:
    return ["--dataset", "synthetic", "--data-path", str(data), "--log-folder", str(logs), "--checkname", name,
            "--crop-height", "64", "--crop-width", "128", "--batch-size", "2", "--num-worker", "0",
            "--multi-step", "1", "2", "--eval-multi-step", "1", "--max-eval-samples", "1", "--max-iters", "2",
            "--epoch", "1", "--device", "cpu", *extra]


def prop_args(data, logs, segnet_file, name, *extra):
    return args(data, logs, name, "--segnet-weights", str(segnet_file), *extra)


@pytest.fixture(scope="module")
def first_run(data, segnet_file, tmp_path_factory):
    """One epoch of propagation training (2 iterations); StepLR halves every iteration."""
    logs = tmp_path_factory.mktemp("logs")
    assert cli.main(prop_args(data, logs, segnet_file, "a", "--step-scheduler", "1", "--lr-gamma", "0.5")) == 0
    return logs


def copy_logs(first_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    logs = tmp_path / "logs"
    shutil.copytree(first_run, logs, ignore=shutil.ignore_patterns("model_best.pth.tar"))  # 50 MB less
    return logs, logs.joinpath(*RUN, "swiftnet_a")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_train_segnet_writes_official_swiftnet_file(data, tmp_path, capsys):
    logs = tmp_path / "logs"
    assert cli.main(args(data, logs, "seg", "--train-segnet", "1")) == 0
    folder = logs.joinpath(*RUN, "swiftnet_seg")
    weights = load_file(folder / "segnet.pt")
    assert set(weights) == set(SwiftNet(19).state_dict())  # the official raw state_dict, nothing else
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    # trained in train mode: BN statistics moved away from their initial values, and the weights
    # moved away from the initialisation (--seed 1, rebuilt here the same way)
    assert not torch.equal(weights["backbone.bn1.running_mean"], torch.zeros(64))
    seed_everything(1)
    init = GSVNet.build(parse_spec("swiftnet"), "light", 19).segnet.state_dict()
    assert torch.equal(weights["backbone.img_mean"], init["backbone.img_mean"])
    # one Adam step moves every weight with a non-zero gradient by exactly ±lr (--segnet-lr 1e-3)
    step = (weights["logits.conv.weight"] - init["logits.conv.weight"]).abs()
    assert step.max().item() == pytest.approx(1e-3, rel=1e-3)
    assert (folder / "segnet_best.pt").is_file()
    ckpt = load_file(folder / "segnet_checkpoint.pth.tar")
    assert ckpt["epoch"] == 1 and ckpt["step"] == 1 and "optimizer" in ckpt  # 2 train clips = 1 batch
    assert f"--segnet-weights {folder / 'segnet_best.pt'}" in capsys.readouterr().out
    with pytest.warns(UserWarning, match="no GSVNet checkpoint"):
        p = VideoPredictor.from_checkpoints(segnet="swiftnet", segnet_weights=str(folder / "segnet.pt"),
                                            fold_bn=False)  # compare the loaded weights themselves
    for k, v in p.model.segnet.state_dict().items():
        torch.testing.assert_close(v, weights[k], rtol=0, atol=0)
    out = p.step(np.zeros((64, 128, 3), np.uint8))
    assert out.labels.shape == (64, 128)


def test_train_segnet_bisenet_official_dict_format(data, tmp_path):
    logs = tmp_path / "logs"
    assert cli.main(args(data, logs, "seg", "--train-segnet", "1", "--segnet", "bisenet", "--max-iters", "1")) == 0
    obj = load_file(logs.joinpath(*RUN, "bisenet_seg", "segnet.pth"))
    assert set(obj) == {"state_dict"} and set(obj["state_dict"]) == set(BiSeNet(19).state_dict())


def test_propagation_run_writes_files(first_run, segnet_file):
    folder = first_run.joinpath(*RUN, "swiftnet_a")
    config = json.loads((folder / "config.json").read_text())
    assert "git_commit" in config and config["lr_gamma"] == 0.5
    events = [json.loads(line)["event"] for line in (folder / "log.jsonl").read_text().splitlines()]
    assert {"train", "epoch", "val"} <= set(events)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["per_distance"]) == {"0", "1"}
    ckpt = load_file(folder / "checkpoint.pth.tar")
    assert ckpt["format"] == FORMAT and ckpt["epoch"] == 1 and ckpt["step"] == 2
    # model_best = avg mIoU pooled over the evaluated distances k = 0, 1
    assert ckpt["best_pred"] == pytest.approx(metrics["intervals"]["2"]["avg_miou"])
    assert load_file(folder / "model_best.pth.tar")["epoch"] == 1
    groups = ckpt["optimizer"]["param_groups"]
    assert [g["name"] for g in groups] == ["guide", "intra", "flow"]
    # SGD Nesterov, momentum .9, wd 5e-4; StepLR(1, 0.5) stepped after each of the 2 iterations
    for g, base in zip(groups, (0.04, 0.01, 1e-4)):
        assert g["lr"] == pytest.approx(base * 0.25) and g["nesterov"] and g["momentum"] == 0.9
        assert g["weight_decay"] == 5e-4
    assert ckpt["scheduler"]["last_epoch"] == 2
    # frozen parts: the keyframe net (incl. BN statistics) and the ideal-delay kernels did not move
    for k, v in torch.load(segnet_file, weights_only=True).items():
        assert torch.equal(ckpt["segnet_state_dict"][k], v), k
    assert torch.equal(ckpt["state_dict"]["grm.ideal_dk.filter_copy_s"], canonical_delay_kernels())
    parts = gsvnet_parts(str(folder / "checkpoint.pth.tar"))  # readable like an official checkpoint
    assert parts["flow"] is not None and "intra_net.intra_net.0.weight" in parts["gsv"]


def test_resume_continues_with_optimizer_state(first_run, segnet_file, data, tmp_path, monkeypatch):
    logs, folder = copy_logs(first_run, tmp_path)
    saved = load_file(folder / "checkpoint.pth.tar")
    seen = []
    real = trainer.train_one_epoch

    def spy(ctx, epoch, state):
        seen.append((epoch, state.step, copy.deepcopy(ctx.optimizer.state_dict()), state.lr_step))
        return real(ctx, epoch, state)

    monkeypatch.setattr(trainer, "train_one_epoch", spy)
    assert cli.main(prop_args(data, logs, segnet_file, "a", "--epoch", "2", "--resume", "1", "--max-iters", "1")) == 0
    assert [s[0] for s in seen] == [1]  # only the missing epoch ran
    _, step, loaded, last_epoch = seen[0]
    assert step == 2 and last_epoch == 2
    assert loaded["param_groups"] == saved["optimizer"]["param_groups"]
    assert loaded["state"].keys() == saved["optimizer"]["state"].keys() and loaded["state"]
    for i, st in saved["optimizer"]["state"].items():
        assert torch.equal(loaded["state"][i]["momentum_buffer"], st["momentum_buffer"])
    after = load_file(folder / "checkpoint.pth.tar")
    assert after["epoch"] == 2 and after["step"] == 3
    assert after["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.04 * 0.5 ** 3)


def test_resume_official_checkpoint_loads_weights_only(data, segnet_file, tmp_path, monkeypatch, capsys):
    official = Path(__file__).parent / "data" / "gsvnet_swnet_seq_checkpoint.pth.tar"  # third-party, legacy
    parts = gsvnet_parts(str(official))
    seen = []
    real = trainer.train_one_epoch

    def spy(ctx, epoch, state):
        seen.append((epoch, state.step, dict(ctx.optimizer.state), copy.deepcopy(ctx.model.gsv.state_dict()),
                     copy.deepcopy(ctx.model.flow_net.state_dict())))
        return real(ctx, epoch, state)

    monkeypatch.setattr(trainer, "train_one_epoch", spy)
    extra = ("--resume", str(official), "--multi-step", "1", "--max-iters", "1")
    assert cli.main(prop_args(data, tmp_path, segnet_file, "off", *extra)) == 0
    assert "weights-only (official) checkpoint" in capsys.readouterr().out
    (epoch, step, opt_state, gsv, flow), = seen
    assert (epoch, step, opt_state) == (0, 0, {})  # fresh optimizer, epoch 0
    for mine, theirs in ((gsv, parts["gsv"]), (flow, parts["flow"])):
        assert mine.keys() == theirs.keys()
        for k in theirs:
            assert torch.equal(mine[k], theirs[k].to(mine[k].dtype)), k


def test_interrupted_save_keeps_previous_checkpoint(first_run, segnet_file, data, tmp_path, monkeypatch):
    logs, folder = copy_logs(first_run, tmp_path)
    before = sha(folder / "checkpoint.pth.tar")

    def broken_save(obj, f, *a, **kw):
        f.write(b"half a checkpoint")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        cli.main(prop_args(data, logs, segnet_file, "a", "--epoch", "2", "--resume", "1", "--max-iters", "1"))
    monkeypatch.undo()
    assert sha(folder / "checkpoint.pth.tar") == before
    assert gsvnet_parts(str(folder / "checkpoint.pth.tar"))["epoch"] == 1
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_non_finite_loss_stops_and_keeps_checkpoint(first_run, segnet_file, data, tmp_path, monkeypatch, capsys):
    logs, folder = copy_logs(first_run, tmp_path)
    before = sha(folder / "checkpoint.pth.tar")
    real = propagation_training.propagation_loss

    def nan_loss(*a, **kw):
        loss, parts = real(*a, **kw)
        return loss * float("nan"), dict(parts, loss=float("nan"))

    monkeypatch.setattr(propagation_training, "propagation_loss", nan_loss)
    assert cli.main(prop_args(data, logs, segnet_file, "a", "--epoch", "2", "--resume", "1")) == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "epoch 1, iteration 0" in err
    assert f"last good checkpoint {folder / 'checkpoint.pth.tar'} is kept" in err
    assert sha(folder / "checkpoint.pth.tar") == before


def test_wrong_checkpoint_is_named(first_run, segnet_file, data, tmp_path, capsys):
    ckpt = first_run.joinpath(*RUN, "swiftnet_a", "checkpoint.pth.tar")
    # a checkpoint with the intra branch resumed into a model without it
    assert cli.main(prop_args(data, tmp_path, segnet_file, "x", "--intra", "0", "--resume", str(ckpt))) == 1
    err = capsys.readouterr().err
    assert str(ckpt) in err and "do not fit" in err and "unexpected keys" in err and "intra_net" in err
    # keyframe-net weights passed where a GSVNet checkpoint belongs
    assert cli.main(prop_args(data, tmp_path, segnet_file, "x", "--resume", str(segnet_file))) == 1
    err = capsys.readouterr().err
    assert str(segnet_file) in err and "not a GSVNet checkpoint" in err
    # a BiSeNet file as the SwiftNet keyframe net
    bisenet_file = tmp_path / "bisenet.pth"
    torch.save({"state_dict": BiSeNet(19).state_dict()}, bisenet_file)
    assert cli.main(args(data, tmp_path, "x", "--segnet-weights", str(bisenet_file))) == 1
    err = capsys.readouterr().err
    assert str(bisenet_file) in err and "missing keys" in err


def test_missing_dataset_is_named(segnet_file, tmp_path, capsys):
    missing = tmp_path / "no_such_dataset"
    assert cli.main(prop_args(missing, tmp_path, segnet_file, "x")) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "not found" in err
    assert cli.main(args(missing, tmp_path, "x", "--train-segnet", "1")) == 1
    assert str(missing) in capsys.readouterr().err


def test_intra0_dis_pretraining_amp_freeze_bn(data, segnet_file, tmp_path, capsys):
    extra = ("--intra", "0", "--pretrain-flow", "dis", "--pretrain-flow-iters", "2", "--multi-step", "2",
             "--max-iters", "1", "--amp", "1", "--freeze-bn", "1", "--finetune-all", "1")
    assert cli.main(prop_args(data, tmp_path, segnet_file, "i0", *extra)) == 0
    out = capsys.readouterr().out
    assert "demo shortcut (--pretrain-flow dis)" in out and "OpenCV DIS flow" in out
    ckpt = load_file(tmp_path.joinpath(*RUN, "swiftnet_i0", "checkpoint.pth.tar"))
    assert not any("intra_net" in k for k in ckpt["state_dict"])
    assert [g["name"] for g in ckpt["optimizer"]["param_groups"]] == ["guide", "flow"]
    assert ckpt["optimizer"]["state"]  # the weights were updated ...
    bn = {k: v for sd in (ckpt["state_dict"], ckpt["state_dict_of"]) for k, v in sd.items() if "running_" in k}
    assert bn  # ... but --freeze-bn kept every BN statistic at its initial value
    for k, v in bn.items():
        assert torch.equal(v, torch.zeros_like(v) if k.endswith("mean") else torch.ones_like(v)), k


def test_true_flow_pretraining_holds_every_pair_and_lowers_the_error(data, segnet_file, tmp_path, capsys):
    extra = ("--pretrain-flow", "true", "--pretrain-flow-iters", "40", "--max-iters", "1")
    assert cli.main(prop_args(data, tmp_path, segnet_file, "tf", *extra)) == 0
    out = capsys.readouterr().out
    # 2 training snippets of 6 frames: 2 × 5 consecutive pairs; batch 2 clips × 2 pairs (--multi-step 1 2)
    assert "flow pre-training: 10 frame pairs in memory, 4 per step" in out
    events = [json.loads(line) for line in tmp_path.joinpath(*RUN, "swiftnet_tf", "log.jsonl").read_text().splitlines()]
    epe = [e["flow_pretrain/epe"] for e in events if "flow_pretrain/epe" in e]
    assert len(epe) == 5 and epe[-1] < 0.8 * epe[0]   # logged at 0, 10, 20, 30 and the last iteration


def test_true_flow_needs_the_synthetic_dataset(data, segnet_file, tmp_path, capsys):
    plain = tmp_path / "plain"
    shutil.copytree(data, plain)
    (plain / "synthetic.json").unlink()  # a Cityscapes-layout tree without the generator's extras
    assert cli.main(prop_args(plain, tmp_path, segnet_file, "t", "--pretrain-flow", "true")) == 1
    err = capsys.readouterr().err
    assert "--pretrain-flow true" in err and str(plain) in err and "synthetic.json" in err


def test_dis_flow_is_backward_and_rescaled_to_the_grid():
    rng = np.random.default_rng(0)
    texture = (rng.random((16, 32)) * 255).astype(np.uint8)
    previous = np.repeat(np.kron(texture, np.ones((4, 4), np.uint8))[..., None], 3, axis=2)  # 64×128×3
    current = np.zeros_like(previous)
    current[:, 3:] = previous[:, :-3]  # content moved 3 px right: current(x) = previous(x − 3)
    flow = dis_backward_flow(current, previous)
    inner = flow[8:-8, 16:-16]
    assert np.median(inner[..., 0]) == pytest.approx(-3.0, abs=0.25)
    assert np.median(inner[..., 1]) == pytest.approx(0.0, abs=0.25)
    # 64×128 grid -> 8×16 grid: x by 15/127, y by 7/63; a constant field stays constant
    full = torch.tensor([-3.0, 2.0]).view(1, 2, 1, 1).expand(1, 2, 64, 128)
    valid = torch.ones(1, 64, 128, dtype=torch.bool)
    valid[0, 0, 0] = False
    low, ok = lowres_flow(full, valid, (8, 16))
    torch.testing.assert_close(low[0, 0], torch.full((8, 16), -3.0 * 15 / 127))
    torch.testing.assert_close(low[0, 1], torch.full((8, 16), 2.0 * 7 / 63))
    assert not ok[0, 0, 0] and ok.sum() == 8 * 16 - 1
    # endpoint error: |(3, 4)| = 5 on the valid pixels only
    pred = low + torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    assert endpoint_error(pred, low, ok).item() == pytest.approx(5.0, abs=1e-4)
