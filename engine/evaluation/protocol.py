"""Evaluation protocol (docs/evaluation.md; the official protocol with its defects fixed).

For every annotated frame and every distance k in ``[0 if --eval-single] + --eval-multi-step``: the
keyframe net segments frame GT−k at ``--eval-scale``, the prediction is propagated k steps
(``--fusion gsv`` = GSVNet, ``warp`` / ``copy`` = the baselines), and the result at GT is upsampled
to the label's own resolution and scored. One int64 confusion matrix per k, summed over ranks;
``utils.metrics.summarize`` turns them into per-distance mIoU/IoU and avg/min mIoU per interval.
With ``--pseudo-labels 1`` the reference is the keyframe net's own prediction of the scored frame instead of
the ground truth (engine/teacher/pseudo_labels.py): agreement, not accuracy.

Distributed: each rank evaluates its own contiguous block of samples (``shard_indices``: nothing
padded or duplicated, unlike DistributedSampler), then the matrices are all-reduced once; every rank
returns the same metrics, only rank 0 prints and writes.

The temporal consistency and mVC that ``--evaluate 1`` reports beside these (engine/evaluation/consistency.py) come
from a separate pass over whole clips under the fixed ``--key-interval`` schedule; validation during training
does not compute them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from config.config import Config
from config.dataset_preset import DatasetPreset
from dataset.build import build_dataset, check_distances
from engine import distributed as dist
from engine.teacher.pseudo_labels import frame_sample_datasets, with_teacher_targets
from engine.runs import data_root
from engine.evaluation.save_results import PredictionWriter
from models.labels import logits_to_labels
from models.propagation_model import PropagationModel
from utils.metrics import confusion_matrix, summarize


def eval_split(preset: DatasetPreset, purpose: str = "evaluate") -> str:
    """Split scored for ``purpose``: "evaluate" (--evaluate) scores Cityscapes' val (its test labels are
    withheld) and CamVid's test split (the 232-frame video protocol the video-segmentation papers
    report); "select" (validation during training, which picks model_best) always uses val, so the
    test split never chooses the model it is reported on."""
    if purpose not in ("evaluate", "select"):
        raise ValueError(f"purpose must be 'evaluate' or 'select', got {purpose!r}")
    return "test" if preset.kind == "camvid" and purpose == "evaluate" else "val"


def eval_distances(cfg: Config) -> list[int]:
    """Distances k to evaluate: [0] for --keyframe-only, else [0 if --eval-single] + --eval-multi-step."""
    if cfg.keyframe_only:
        return [0]
    steps = sorted({int(k) for k in cfg.eval_multi_step})
    distances = ([0] if cfg.eval_single else []) + [k for k in steps if k > 0]
    if not distances:
        raise ValueError("nothing to evaluate: --eval-single 0 and no --eval-multi-step distances")
    return distances


def eval_datasets(cfg: Config, preset: DatasetPreset, distances: list[int],
                  purpose: str = "evaluate") -> dict[int, Dataset]:
    """One labelled clip dataset per distance of the split for ``purpose`` (see eval_split), cut to
    --max-eval-samples (0 = all). --pseudo-labels 1: the label-free samples (engine/teacher/pseudo_labels.py: every
    frame with k predecessors on clip folders), no label read; evaluate_model adds the teacher's."""
    root, split = data_root(cfg, preset), eval_split(preset, purpose)
    check_distances(preset, root, distances, "--eval-multi-step")
    if cfg.pseudo_labels:
        unlabelled = frame_sample_datasets(cfg, preset, split, distances, flag="--eval-multi-step")
    out: dict[int, Dataset] = {}
    for k in distances:
        ds = unlabelled[k] if cfg.pseudo_labels else build_dataset(preset, split, k, root=root, with_label=True)
        if cfg.max_eval_samples > 0 and len(ds) > cfg.max_eval_samples:
            ds = Subset(ds, range(cfg.max_eval_samples))
        out[k] = ds
    return out


def _collate(samples: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """Group a batch by frame size (labels keep their own resolution, so sizes may differ).

    Returns [(frames uint8 B×T×3×H×W, labels int64 B×H×W, names)], in input order per group.
    """
    groups: dict[tuple, list[dict]] = {}
    for s in samples:
        groups.setdefault(tuple(s["frames"].shape), []).append(s)
    return [(torch.stack([s["frames"] for s in g]), torch.stack([s["label"] for s in g]),
             [s["name"] for s in g]) for g in groups.values()]


def clip_logits(model, frames: torch.Tensor, key_scale: float, fusion: str, every_frame: bool) -> list[torch.Tensor]:
    """Logits B×C×(H//8)×(W//8) of a clip's last frame (``[last]``), or of every frame (keyframe first).

    frames: B×T×3×H×W float RGB 0–255, frames[:, 0] is the keyframe.
    """
    if not every_frame:
        return [model.forward_clip(frames, key_scale=key_scale, fusion=fusion)]
    logits, prev_lowres = model.keyframe(frames[:, 0], key_scale), model.lowres_bgr(frames[:, 0])
    out = [logits]
    for t in range(1, frames.shape[1]):
        cur_lowres = model.lowres_bgr(frames[:, t])
        logits = model.propagate(logits, prev_lowres, cur_lowres, fusion)
        out.append(logits)
        prev_lowres = cur_lowres
    return out


@dataclass
class _Pass:
    """What one evaluation pass needs besides the data."""
    device: torch.device
    key_scale: float
    fusion: str
    ignore_index: int
    writer: PredictionWriter | None
    every_frame: bool  # keep every frame's prediction (for --save-seq-res)


def _evaluate_distance(net, loader, k: int, cm: torch.Tensor, run: _Pass, bar) -> int:
    """Accumulate distance ``k`` into ``cm`` (C×C int64, in place); returns the number of samples."""
    count = 0
    for groups in loader:
        for frames, labels, names in groups:
            frames, labels = frames.to(run.device).float(), labels.to(run.device)
            seq = clip_logits(net, frames, run.key_scale, run.fusion, run.every_frame)
            pred = logits_to_labels(seq[-1], tuple(labels.shape[-2:]))  # B×H×W at the label's resolution
            cm += confusion_matrix(pred, labels, cm.shape[0], ignore_index=run.ignore_index)
            if run.writer is not None:
                _write(run.writer, k, names, pred, seq if run.every_frame else None, tuple(frames.shape[-2:]))
            count += len(names)
            bar.update(len(names))
    return count


def _write(writer: PredictionWriter, k: int, names: list[str], pred: torch.Tensor, seq, size) -> None:
    """pred: B×H×W labels of the annotated frames; seq: per-frame B×C×h×w logits or None."""
    pred_np = pred.cpu().numpy()
    for b, name in enumerate(names):
        writer.write_gt(k, name, pred_np[b])
        if seq is not None:
            writer.write_clip(k, name, [logits_to_labels(x[b:b + 1], size)[0].cpu().numpy() for x in seq])


def evaluate_model(net: PropagationModel, cfg: Config, preset: DatasetPreset, device, *, distances: list[int],
                   key_scale: float, fusion: str = "gsv", save_dir=None, progress: bool = True,
                   purpose: str = "evaluate") -> dict:
    """Score ``net`` (a GSVNet or its ONNX export on ONNX Runtime) on the evaluation split.

    distances: the k to evaluate; key_scale: keyframe input scale; fusion: gsv | warp | copy.
    purpose: "evaluate" (--evaluate) or "select" (validation during training; see eval_split).
    save_dir: if given, every evaluated prediction is written there (``PredictionWriter`` layout;
    with ``cfg.save_seq_res`` also every frame of each clip). ``cfg.pseudo_labels``: the keyframe net's labels
    of each scored frame at ``key_scale`` (the run's teacher cache) replace the ground truth, so the mIoU is
    agreement with the keyframe net; metrics["reference"] says which ("teacher" or "ground_truth").
    Collective in distributed runs: all ranks must call it. Returns the metrics.json dict
    (docs/evaluation.md#outputs), identical on every rank.
    """
    datasets = eval_datasets(cfg, preset, distances, purpose)
    if cfg.pseudo_labels:  # the reference: the keyframe net's own labels of each scored frame at key_scale
        datasets = with_teacher_targets(net, cfg, datasets, device, scale=key_scale, progress=progress)
    rank, world = dist.rank(), dist.world_size()
    batch = max(1, cfg.batch_size // world)
    writer = PredictionWriter(save_dir, preset) if save_dir is not None else None
    run = _Pass(torch.device(device), key_scale, fusion, preset.ignore_index, writer,
                every_frame=bool(cfg.save_seq_res) and writer is not None)
    cms = {k: torch.zeros(preset.num_classes, preset.num_classes, dtype=torch.int64, device=device)
           for k in distances}
    counts = torch.zeros(len(distances), dtype=torch.int64)
    shards = {k: dist.shard_indices(len(ds), rank, world) for k, ds in datasets.items()}
    bar = tqdm(total=sum(len(s) for s in shards.values()), desc="eval", unit="clip", dynamic_ncols=True,
               disable=not (progress and dist.is_main()))
    try:
        with net.evaluating(), dist.fail_together("evaluation"), torch.inference_mode():
            for i, k in enumerate(distances):
                bar.set_postfix(k=k)
                loader = DataLoader(Subset(datasets[k], shards[k]), batch_size=batch, shuffle=False,
                                    num_workers=cfg.num_worker, collate_fn=_collate,
                                    pin_memory=run.device.type == "cuda")
                counts[i] = _evaluate_distance(net, loader, k, cms[k], run, bar)
    finally:
        bar.close()
    for k in distances:
        dist.all_reduce_sum(cms[k])
    dist.all_reduce_sum(counts)
    metrics = summarize({k: cm.cpu() for k, cm in cms.items()}, preset.class_names)
    metrics.update(num_samples={str(k): int(n) for k, n in zip(distances, counts)}, fusion=fusion,
                   key_scale=key_scale, split=eval_split(preset, purpose), dataset=preset.name,
                   reference="teacher" if cfg.pseudo_labels else "ground_truth")
    return metrics
