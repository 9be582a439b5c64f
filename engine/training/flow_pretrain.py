"""Demo shortcut (docs/deviations.md#demo-shortcuts; docs/training.md#flow-pre-training): pre-train the flow net on a target flow before end-to-end training.

``--pretrain-flow dis``: target = OpenCV DIS optical flow computed on the fly (in the DataLoader
workers) on the augmented training clips (no labels needed: on clip folders every frame with k predecessors,
so unlabelled clips too), backward: ``calc(current, previous)`` so that
current(p) ≈ previous(p + flow(p)), the convention of ``models.warp.warp`` (``dis_target_flow``).
``--pretrain-flow true``: target = the synthetic generator's saved true backward flow
(``extras/{split}/{city}/{stem}_flow.npy``, H×W×2, same convention, with ``_valid.png`` masks), on
un-augmented full frames (the saved flow would have to be transformed with the clip otherwise).

The net's output as the pipeline uses it (resized to the 1/8 grid, divided by FLOW_DIVISOR, i.e.
``GSVNet.flow``) regresses the target resampled to that grid (bilinear, align_corners=True, like
the images) with its vectors rescaled by (w−1)/(W−1), (h−1)/(H−1); loss = mean endpoint error
over valid pixels; Adam at PRETRAIN_LR for --pretrain-flow-iters iterations. ``dis``: each
consecutive pair of a clip of the largest --multi-step distance is one training pair. ``true``:
every consecutive pair of every training snippet, prepared once and kept in memory (LowresPairs).
"""
from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler
from tqdm import tqdm

from config.config import Config
from config.dataset_preset import DatasetPreset
from models.gsvnet import GSVNet
from models.resize import resize
from utils.logging import RunLogger
from dataset.build import build_dataset
from dataset.cityscapes import clip_frame_names
from dataset.synthetic import extras_paths, read_marker
from engine import distributed as dist
from engine.runs import data_root, run_dir
from engine.teacher.pseudo_labels import EVERY_FRAME_KINDS
from engine.training.loop import LOG_EVERY, next_batch, set_train_mode, train_transform
from engine.training.losses import autocast, stop_if_non_finite
from utils.optical_flow import DIS_PRESET, dis_flow, to_gray

PRETRAIN_LR = 1e-3


def dis_target_flow(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """The ``--pretrain-flow dis`` target of two RGB uint8 H×W×3 frames: float32 H×W×2 (x, y) with
    current(p) ≈ previous(p + flow(p)), one DIS call (utils.optical_flow, preset DIS_PRESET). No
    forward-backward check here (every pixel counts, as before); utils.optical_flow.dis_backward_flow
    (prev, cur) adds it at twice the cost."""
    return dis_flow(to_gray(current), to_gray(previous), DIS_PRESET)


def lowres_flow(flow: Tensor, valid: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Full-resolution flow N×2×H×W (pixels) and valid N×H×W -> the same on the h×w grid.

    Sampled bilinearly with align_corners=True (the grid the pipeline resizes frames to), vectors
    scaled to pixels of that grid; a low-res pixel is valid when all its source samples are.
    """
    (h, w), (big_h, big_w) = size, flow.shape[-2:]
    out = resize(flow.float(), size)
    scale = torch.tensor([(w - 1) / max(big_w - 1, 1), (h - 1) / max(big_h - 1, 1)], device=flow.device)
    out = out * scale.view(1, 2, 1, 1)
    ok = resize(valid[:, None].float(), size)[:, 0] > 0.999
    return out, ok


def endpoint_error(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean ‖pred − target‖₂ over valid pixels; pred/target N×2×h×w, valid N×h×w bool."""
    epe = (pred - target).pow(2).sum(1).add(1e-12).sqrt()
    if not valid.any():
        return pred.sum() * 0.0
    return epe[valid].mean()


class FlowPairs(Dataset):
    """Clips of a training dataset plus the target flow of each consecutive pair.

    Sample: {"frames": uint8 T×3×H×W, "flow": float32 (T−1)×2×H×W, "valid": bool (T−1)×H×W};
    flow[t−1] is the backward flow of frame t (to frame t−1).
    """

    def __init__(self, base: Dataset, source: str, root: str | None = None):
        self.base, self.source, self.root = base, source, root

    def __len__(self) -> int:
        return len(self.base)

    def _true(self, name: str, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        flows, valids = [], []
        for stem in clip_frame_names(name, num_frames - 1)[1:]:
            paths = extras_paths(self.root, self.base.split, stem)
            if not paths["flow"].is_file():
                raise FileNotFoundError(f"missing true flow {paths['flow']} (synthetic extras, --pretrain-flow true)")
            flows.append(np.load(paths["flow"]).astype(np.float32))
            valid = cv2.imread(str(paths["valid"]), cv2.IMREAD_UNCHANGED)
            if valid is None:
                raise FileNotFoundError(f"missing flow-validity mask {paths['valid']}")
            valids.append(valid > 0)
        return np.stack(flows), np.stack(valids)

    def __getitem__(self, index: int) -> dict:
        sample = self.base[index]
        frames = sample["frames"]
        if self.source == "true":
            flow, valid = self._true(sample["name"], frames.shape[0])
        else:
            rgb = frames.permute(0, 2, 3, 1).numpy()
            flow = np.stack([dis_target_flow(rgb[t], rgb[t - 1]) for t in range(1, len(rgb))])
            valid = np.ones(flow.shape[:3], dtype=bool)
        return {"frames": frames, "flow": torch.from_numpy(flow).permute(0, 3, 1, 2).contiguous(),
                "valid": torch.from_numpy(valid)}


def flow_pairs_loader(cfg: Config, preset: DatasetPreset) -> DataLoader:
    root = data_root(cfg, preset)
    if cfg.pretrain_flow == "true" and read_marker(root) is None:
        raise ValueError(f"--pretrain-flow true needs the synthetic dataset's saved true flow, but {root} holds "
                         "no synthetic dataset (synthetic.json missing); use --pretrain-flow dis")
    if cfg.pretrain_flow == "true":
        # every consecutive pair of every snippet once (clips of 2 frames ending at each frame)
        base = build_dataset(preset, "train", 1, root=root, dense=True)
    else:  # the flow needs no labels: on clip folders every frame with k predecessors, masks or not
        base = build_dataset(preset, "train", max(int(k) for k in cfg.multi_step), root=root,
                             transform=train_transform(cfg, preset), with_label=False,
                             labelled_only=preset.kind not in EVERY_FRAME_KINDS)
    ds = FlowPairs(base, cfg.pretrain_flow, root)
    sampler = DistributedSampler(ds, shuffle=True, seed=max(cfg.seed, 0)) if dist.is_dist() else RandomSampler(ds)
    return DataLoader(ds, batch_size=max(1, cfg.batch_size // dist.world_size()), sampler=sampler,
                      num_workers=cfg.num_worker, drop_last=False)


def cycle(loader: DataLoader):
    """Endless iteration over a loader, reshuffling each pass (same pass count on every rank)."""
    for epoch in itertools.count():
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(10_000 + epoch)
        yield from loader


class LowresPairs:
    """Every training pair of ``--pretrain-flow true`` as network inputs and targets, held in memory.

    The true flow is fixed per frame (un-augmented clips), so the 1/8-grid images and target flows are
    computed once; each iteration is then only the flow net's forward and backward (reading the
    full-resolution .npy flows every iteration made the demo's pre-training data-bound, ~0.4 s/it).
    """

    def __init__(self, model, loader: DataLoader, device: torch.device):
        cur, prev, target, valid = [], [], [], []
        with torch.no_grad():
            for batch in tqdm(loader, desc="flow pre-training: loading the true flow", unit="clip",
                              disable=not dist.is_main()):
                frames = batch["frames"].to(device).float()               # B×T×3×H×W
                lowres = model.lowres_bgr(frames.flatten(0, 1)).unflatten(0, frames.shape[:2])
                cur.append(lowres[:, 1:].flatten(0, 1))                   # N×3×h×w, N = B·(T−1)
                prev.append(lowres[:, :-1].flatten(0, 1))
                t, v = lowres_flow(batch["flow"].flatten(0, 1).to(device), batch["valid"].flatten(0, 1).to(device),
                                   tuple(lowres.shape[-2:]))
                target.append(t)
                valid.append(v)
        self.cur, self.prev = torch.cat(cur), torch.cat(prev)
        self.target, self.valid = torch.cat(target), torch.cat(valid)

    def __len__(self) -> int:
        return len(self.cur)

    def batches(self, batch_size: int, seed: int):
        """Endless random batches of pairs (a new permutation each pass)."""
        generator = torch.Generator().manual_seed(seed)
        while True:
            for idx in torch.randperm(len(self), generator=generator).split(batch_size):
                idx = idx.to(self.cur.device)
                yield self.cur[idx], self.prev[idx], self.target[idx], self.valid[idx]


def _pairs_from_loader(cfg: Config, preset: DatasetPreset, model: GSVNet, device: torch.device):
    """Endless (cur_lowres, prev_lowres, target, valid) batches from the DataLoader (DIS flow on augmented clips)."""
    batches = cycle(flow_pairs_loader(cfg, preset))
    while True:
        batch = next_batch(batches, "loading a flow pre-training batch")
        frames = batch["frames"].to(device).float()  # B×T×3×H×W
        cur_lowres = model.lowres_bgr(frames[:, 1:].flatten(0, 1))  # N×3×h×w, N = B·(T−1)
        prev_lowres = model.lowres_bgr(frames[:, :-1].flatten(0, 1))
        target, valid = lowres_flow(batch["flow"].flatten(0, 1).to(device),
                                    batch["valid"].flatten(0, 1).to(device), tuple(cur_lowres.shape[-2:]))
        yield cur_lowres, prev_lowres, target, valid


def pretrain_flow(cfg: Config, preset: DatasetPreset, model: GSVNet, train_model: GSVNet, device: torch.device,
                  logger: RunLogger) -> float:
    """Run the shortcut on ``model``'s flow net (``train_model``: the same modules, DDP-wrapped when distributed,
    runs the forward); returns the last mean EPE (1/8 px)."""
    if not cfg.train_optical_flow:
        raise ValueError("--pretrain-flow needs --train-optical-flow 1 (the flow net must be trainable)")
    what = "OpenCV DIS flow" if cfg.pretrain_flow == "dis" else "the synthetic dataset's true flow"
    if dist.is_main():
        print(f"demo shortcut (--pretrain-flow {cfg.pretrain_flow}): pre-training the {cfg.optical_flow_network} "
              f"flow net on {what} for {cfg.pretrain_flow_iters} iterations before end-to-end training")
    if cfg.pretrain_flow == "true":
        pairs = LowresPairs(model, flow_pairs_loader(cfg, preset), device)
        # as many pairs per step as the DIS path gives: batch clips × (T − 1) pairs each
        per_step = max(1, cfg.batch_size // dist.world_size()) * max(int(k) for k in cfg.multi_step)
        batches = pairs.batches(per_step, max(cfg.seed, 0) + 1000 * dist.rank())
        if dist.is_main():
            print(f"flow pre-training: {len(pairs)} frame pairs in memory, {per_step} per step")
    else:
        batches = _pairs_from_loader(cfg, preset, model, device)
    optimizer = torch.optim.Adam(model.flow_net.parameters(), lr=PRETRAIN_LR)
    set_train_mode(train_model, cfg.train_optical_flow, cfg.freeze_bn)
    recent, checkpoint = [], run_dir(cfg) / "checkpoint.pth.tar"
    for i in tqdm(range(cfg.pretrain_flow_iters), desc="flow pre-training", unit="it", disable=not dist.is_main()):
        cur_lowres, prev_lowres, target, valid = next(batches)
        with autocast(device, cfg.amp):
            pred = train_model.flow(cur_lowres, prev_lowres)
        loss = endpoint_error(pred.float(), target, valid)
        stop_if_non_finite(float(loss.detach()), f"flow pre-training iteration {i}", checkpoint)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recent = (recent + [float(loss.detach())])[-10:]
        if i % LOG_EVERY == 0 or i + 1 == cfg.pretrain_flow_iters:
            logger.scalars({"flow_pretrain/epe": recent[-1]}, i, event="flow_pretrain")
    mean_epe = sum(recent) / max(len(recent), 1)
    if dist.is_main():
        print(f"flow pre-training done: mean endpoint error of the last iterations {mean_epe:.3f} px (1/8 grid)")
    return mean_epe


def maybe_pretrain_flow(cfg: Config, preset: DatasetPreset, model: GSVNet, train_model: GSVNet,
                        device: torch.device, logger: RunLogger, resume: Path | None) -> None:
    """Run the shortcut unless the flow net was just loaded from a checkpoint (--resume)."""
    if resume is None:
        pretrain_flow(cfg, preset, model, train_model, device, logger)
    elif dist.is_main():
        print(f"--pretrain-flow {cfg.pretrain_flow} skipped: the flow net comes from {resume}")
