"""The ``--export onnx`` job: write the model as ONNX graphs + gsvnet.json for ONNX Runtime (onnx_export.py).

    python main.py --export onnx --segnet swiftnet --segnet-weights W.pt --resume G.tar --output export/ \\
        --export-size 1024x2048 --export-size 720x1280

Every graph is run at every --export-size under ONNX Runtime and compared with the PyTorch output before
the folder is published; run it with ``--backend onnxruntime --export-dir export/`` or load it with
engine/deployment/onnx_runtime.py. The keyframe scale is --eval-scale, the interval --key-interval (the runtime's
default), classes and colours those of --dataset.
"""
from __future__ import annotations

import torch

from config.config import Config
from engine.deployment.onnx_export import DEFAULT_SIZE, export_onnx, parse_size
from engine.deployment.onnx_runtime import size_key
from engine.model_builder import build_model
from engine.runs import preset_of, resolve_resume


def export(cfg: Config, device: torch.device) -> int:
    """Check the flags, build the model on the CPU, export and check every graph, print what was written.
    Returns 0."""
    if cfg.export != "onnx":
        raise ValueError(f"--export {cfg.export!r}: only 'onnx' is supported")
    if not cfg.output:
        raise ValueError("--export onnx needs --output DIR (the folder the graphs and gsvnet.json go to)")
    sizes = [parse_size(s) for s in cfg.export_size] or [DEFAULT_SIZE]
    preset = preset_of(cfg)
    # Exported on the CPU whatever --device says: the graphs do not depend on where they were traced.
    model, _ = build_model(cfg, preset, torch.device("cpu"), resume=resolve_resume(cfg))
    meta = export_onnx(model, cfg.output, sizes, key_scale=cfg.eval_scale, key_interval=cfg.key_interval,
                       class_names=preset.class_names, palette=preset.palette)
    for part, entry in meta["graphs"].items():
        kind = "dynamic" if entry["dynamic"] else "static"
        worst = max(entry["max_abs_diff"].values())
        print(f"{part}: {kind}, files {sorted(set(entry['files'].values()))}, max |ONNX - PyTorch| {worst:.3g}")
    print(f"export: {cfg.output}/gsvnet.json ({', '.join(size_key(s) for s in sizes)}); run it with "
          f"--backend onnxruntime --export-dir {cfg.output}")
    return 0
