"""Demo shortcut (DESIGN.md §13): pre-train the flow net on a target flow before end-to-end training.

``--pretrain-flow dis``: target = OpenCV DIS optical flow computed on the fly (in the DataLoader
workers) on the augmented training clips, backward: ``calc(current, previous)`` so that
current(p) ≈ previous(p + flow(p)), the convention of ``models.warp.warp``.
``--pretrain-flow true``: target = the synthetic generator's saved true backward flow
(``extras/{split}/{city}/{stem}_flow.npy``, H×W×2, same convention, with ``_valid.png`` masks), on
un-augmented full frames (the saved flow would have to be transformed with the clip otherwise).

The net's output as the pipeline uses it (resized to the 1/8 grid, divided by FLOW_DIVISOR, i.e.
``GSVNet.flow``) regresses the target resampled to that grid (bilinear, align_corners=True, like
the images) with its vectors rescaled by (w−1)/(W−1), (h−1)/(H−1); loss = mean endpoint error
over valid pixels; Adam at PRETRAIN_LR for --pretrain-flow-iters iterations. Each consecutive pair
of a clip of the largest --multi-step distance is one training pair.
"""
from __future__ import annotations

import itertools
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from config.presets import build_dataset
from dataset.cityscapes import clip_frame_names
from dataset.synthetic import extras_paths, read_marker
from engine import distributed as dist
from engine.common import data_root, run_dir

PRETRAIN_LR = 1e-3


def dis_backward_flow(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """DIS flow of two RGB uint8 H×W×3 frames -> float32 H×W×2 (x, y) with current(p) ≈ previous(p + flow(p))."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    cur = cv2.cvtColor(np.ascontiguousarray(current), cv2.COLOR_RGB2GRAY)
    prev = cv2.cvtColor(np.ascontiguousarray(previous), cv2.COLOR_RGB2GRAY)
    return dis.calc(cur, prev, None)


def lowres_flow(flow: Tensor, valid: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Full-resolution flow N×2×H×W (pixels) and valid N×H×W -> the same on the h×w grid.

    Sampled bilinearly with align_corners=True (the grid the pipeline resizes frames to), vectors
    scaled to pixels of that grid; a low-res pixel is valid when all its source samples are.
    """
    (h, w), (big_h, big_w) = size, flow.shape[-2:]
    out = F.interpolate(flow.float(), size=size, mode="bilinear", align_corners=True)
    scale = torch.tensor([(w - 1) / max(big_w - 1, 1), (h - 1) / max(big_h - 1, 1)], device=flow.device)
    out = out * scale.view(1, 2, 1, 1)
    ok = F.interpolate(valid[:, None].float(), size=size, mode="bilinear", align_corners=True)[:, 0] > 0.999
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
            flow = np.stack([dis_backward_flow(rgb[t], rgb[t - 1]) for t in range(1, len(rgb))])
            valid = np.ones(flow.shape[:3], dtype=bool)
        return {"frames": frames, "flow": torch.from_numpy(flow).permute(0, 3, 1, 2).contiguous(),
                "valid": torch.from_numpy(valid)}


def flow_pairs_loader(ctx) -> DataLoader:
    from engine.trainer import train_transform
    cfg, preset = ctx.cfg, ctx.preset
    root = data_root(cfg, preset)
    if cfg.pretrain_flow == "true" and read_marker(root) is None:
        raise ValueError(f"--pretrain-flow true needs the synthetic dataset's saved true flow, but {root} holds "
                         "no synthetic dataset (synthetic.json missing); use --pretrain-flow dis")
    transform = train_transform(cfg, preset) if cfg.pretrain_flow == "dis" else None
    base = build_dataset(preset, "train", max(int(k) for k in cfg.multi_step), root=root, transform=transform,
                         with_label=False)
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


def pretrain_flow(ctx) -> float:
    """Run the shortcut on ``ctx`` (an engine.trainer.TrainContext); returns the last mean EPE (1/8 px)."""
    from engine.losses import autocast, stop_if_non_finite
    from engine.trainer import next_batch, set_train_mode
    cfg, model = ctx.cfg, ctx.model
    if not cfg.train_optical_flow:
        raise ValueError("--pretrain-flow needs --train-optical-flow 1 (the flow net must be trainable)")
    what = "OpenCV DIS flow" if cfg.pretrain_flow == "dis" else "the synthetic dataset's true flow"
    if dist.is_main():
        print(f"demo shortcut (--pretrain-flow {cfg.pretrain_flow}): pre-training the {cfg.optical_flow_network} "
              f"flow net on {what} for {cfg.pretrain_flow_iters} iterations before end-to-end training")
    batches = cycle(flow_pairs_loader(ctx))
    optimizer = torch.optim.Adam(model.flow_net.parameters(), lr=PRETRAIN_LR)
    set_train_mode(model, cfg)
    recent, checkpoint = [], run_dir(cfg) / "checkpoint.pth.tar"
    for i in range(cfg.pretrain_flow_iters):
        batch = next_batch(batches, "loading a flow pre-training batch")
        frames = batch["frames"].to(ctx.device).float()  # B×T×3×H×W
        cur_lr = model.lowres_bgr(frames[:, 1:].flatten(0, 1))  # N×3×h×w, N = B·(T−1)
        prev_lr = model.lowres_bgr(frames[:, :-1].flatten(0, 1))
        with autocast(ctx.device, cfg.amp):
            pred = ctx.train_model.flow(cur_lr, prev_lr)
        target, valid = lowres_flow(batch["flow"].flatten(0, 1).to(ctx.device),
                                    batch["valid"].flatten(0, 1).to(ctx.device), tuple(cur_lr.shape[-2:]))
        loss = endpoint_error(pred.float(), target, valid)
        stop_if_non_finite(float(loss.detach()), f"flow pre-training iteration {i}", checkpoint)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recent = (recent + [float(loss.detach())])[-10:]
        if i % 10 == 0 or i + 1 == cfg.pretrain_flow_iters:
            ctx.logger.scalars({"flow_pretrain/epe": recent[-1]}, i, event="flow_pretrain")
    mean_epe = sum(recent) / max(len(recent), 1)
    if dist.is_main():
        print(f"flow pre-training done: mean endpoint error of the last iterations {mean_epe:.3f} px (1/8 grid)")
    return mean_epe


def maybe_pretrain_flow(ctx, resume) -> None:
    """Run the shortcut unless the flow net was just loaded from a checkpoint (--resume)."""
    if resume is None:
        pretrain_flow(ctx)
    elif dist.is_main():
        print(f"--pretrain-flow {ctx.cfg.pretrain_flow} skipped: the flow net comes from {resume}")
