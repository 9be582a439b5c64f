"""The ``--evaluate 1`` job: avg/min mIoU per keyframe interval (protocol.py), then the whole-clip consistency
pass under the fixed schedule of ``--key-interval`` (consistency.py: temporal consistency, and mVC8/16 on densely
labelled clips; ``--temporal-consistency 0`` skips the pass), printed and written as metrics.json + config.json
into logs/run/{dataset}/{segnet}_{checkname}/eval_{name}/; predictions (``--save-res``) staged, then committed."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from config.config import Config
from engine import distributed as dist
from engine.deployment.onnx_runtime import onnx_model_for
from engine.evaluation.consistency import consistency_clips, evaluate_consistency, schedule_interval, tc_enabled
from engine.evaluation.protocol import eval_datasets, eval_distances, evaluate_model
from engine.evaluation.save_results import commit_staged, discard_staged, staging_dir
from engine.model_builder import build_model
from engine.runs import pred_dir, preset_of, resolve_resume, run_dir, write_config
from utils.logging import write_json
from utils.metrics import format_table

RANDOM_WARNING = """
************************************************************************************************
WARNING: no --resume given: the flow net and the GSV module are RANDOMLY INITIALISED.
The propagated distances (k >= 1) measure random weights, not GSVNet. Pass --resume 1 (this run's
checkpoint or weights/gsvnet_<net>_r18.tar) or --resume PATH. (--fusion copy and --keyframe-only 1
need no checkpoint.)
************************************************************************************************
"""


def _describe(cfg: Config, metrics: dict, resume: Path | None) -> str:
    samples = ", ".join(f"k={k}: {n}" for k, n in metrics["num_samples"].items())
    mode = "keyframe net only" if cfg.keyframe_only else f"fusion={metrics['fusion']}"
    reference = ("\nreference: the keyframe net's own prediction of each scored frame (--pseudo-labels 1): the "
                 "mIoU below is AGREEMENT with the keyframe net, not accuracy"
                 if metrics.get("reference") == "teacher" else "")
    return (f"{cfg.dataset} {metrics['split']} | {cfg.segnet} + {cfg.optical_flow_network} flow | {mode} | "
            f"key scale {metrics['key_scale']} | checkpoint: {resume or 'none'}\nsamples: {samples}{reference}")


def _measure(model, cfg: Config, preset, device, distances: list[int], save_dir) -> dict:
    """metrics.json's dict: mIoU per distance and interval, then the consistency pass: "key_interval",
    "temporal_consistency" (None with --temporal-consistency 0) and, on densely labelled clips, "mvc8"/"mvc16"."""
    fusion = "copy" if cfg.keyframe_only else cfg.fusion
    metrics = evaluate_model(model, cfg, preset, device, distances=distances, key_scale=cfg.eval_scale,
                             fusion=fusion, save_dir=save_dir, progress=True)
    metrics.update(keyframe_only=bool(cfg.keyframe_only), key_interval=schedule_interval(cfg),
                   temporal_consistency=None)
    if tc_enabled(cfg):
        metrics.update(evaluate_consistency(model, cfg, preset, device, key_scale=cfg.eval_scale, fusion=fusion,
                                            keyframe_only=bool(cfg.keyframe_only)))
    return metrics


def evaluate_and_publish(cfg: Config, device: torch.device) -> int:
    """Evaluate once, print the table, write metrics.json + config.json (rank 0). Returns 0."""
    preset = preset_of(cfg)
    distances = eval_distances(cfg)
    eval_datasets(cfg, preset, distances)  # a missing dataset fails here, before the model loads
    if tc_enabled(cfg):
        consistency_clips(cfg, preset)
    if cfg.backend == "onnxruntime":
        model, resume = onnx_model_for(cfg, preset, device, cfg.eval_scale), Path(cfg.export_dir)
    else:
        resume = resolve_resume(cfg)
        if resume is None and not cfg.keyframe_only and cfg.fusion != "copy" and dist.is_main():
            print(RANDOM_WARNING, file=sys.stderr, flush=True)
        model, _ = build_model(cfg, preset, device, resume=resume)
    name = cfg.ResFolderName or dist.shared_timestamp()
    saving = cfg.save_res or cfg.save_seq_res
    final_pred, staging = pred_dir(cfg, name), staging_dir(pred_dir(cfg, name))
    if saving and dist.is_main():
        discard_staged(staging)  # leftovers of a crashed run
        staging.mkdir(parents=True)
    dist.barrier()
    try:
        metrics = _measure(model, cfg, preset, device, distances, staging if saving else None)
        dist.barrier()  # every rank's predictions are on disk
    except BaseException:
        if saving and dist.is_main():
            discard_staged(staging)
        raise
    if not dist.is_main():
        return 0
    eval_dir = run_dir(cfg) / f"eval_{name}"
    write_config(cfg, eval_dir, checkpoint=str(resume) if resume else None, distances=distances,
                 world_size=dist.world_size())
    write_json(eval_dir / "metrics.json", metrics)
    if saving:
        commit_staged(staging, final_pred)
    print(_describe(cfg, metrics, resume))
    print(format_table(metrics, per_class=True))
    print(f"wrote {eval_dir / 'metrics.json'} and config.json")
    if saving:
        print(f"wrote predictions to {final_pred}/k<k>/ (+ color/" + (", seq/" if cfg.save_seq_res else "") + ")")
    return 0
