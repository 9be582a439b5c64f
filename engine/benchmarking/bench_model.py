"""The model a benchmark times: the Config's GSVNet (any keyframe-net spec) with whatever weights exist, seeded
random ones otherwise (timing does not care; the report says which), its parameters per part, and the
inference optimisations in effect."""
from __future__ import annotations

import torch

from config.config import Config
from engine.benchmarking.throughput_report import params_mb
from engine.model_builder import build_model
from engine.runs import preset_of, resolve_resume, segnet_weights_path
from models import cpu_kernels
from models.gsvnet import GSVNet
from utils.seed import seed_everything


def build_bench_model(cfg: Config, device: torch.device) -> tuple[GSVNet, dict]:
    """The Config's GSVNet (any keyframe-net spec) with whatever weights exist; random init otherwise
    (timing does not care). An explicit --segnet-weights or --resume file that is missing is still an error.
    """
    preset = preset_of(cfg)
    resume = resolve_resume(cfg)
    seed_everything(cfg.seed)  # the same random weights every run: .labels time depends on the predictions
    model, parts = build_model(cfg, preset, device, resume=resume, missing_segnet="quiet")
    default = segnet_weights_path(cfg)
    if default is not None and default.exists():
        segnet_src = str(default)
    elif parts is not None and parts["segnet"] is not None:
        segnet_src = f"{resume} (segnet entry)"
    elif cfg.segnet.kind == "hf":
        segnet_src = f"{cfg.segnet.target} (the hf folder's own weights)"
    else:
        segnet_src = "random init (no weights file)"
    propagation_src = str(resume) if resume is not None else "random init (no --resume file)"
    note = (f"keyframe net {model.segnet_name}: {segnet_src}; flow + GSV: {propagation_src}. "
            f"FLOPs and the network times do not depend on the weight values; the .labels time does "
            f"(only cells on class boundaries are interpolated), so it varies with weights and content.")
    return model.eval(), {"segnet": segnet_src, "propagation": propagation_src, "note": note}


def module_params(model: GSVNet) -> dict[str, dict]:
    """Parameter count and float32 MB of the keyframe net, flow net, GSV and their sum."""
    counts = {name: sum(p.numel() for p in getattr(model, attr).parameters())
              for name, attr in (("segnet", "segnet"), ("flow", "flow_net"), ("gsv", "gsv"))}
    counts["total"] = sum(counts.values())
    return {name: {"count": c, "mb": params_mb(c)} for name, c in counts.items()}


def optimisations_note(device: torch.device, malloc_tuned: bool) -> str:
    kernels = ("compiled CPU kernels (numba) for labels, frame shrink, warp, edge map"
               if device.type == "cpu" and cpu_kernels.available() else "PyTorch ops only")
    return (f"BatchNorm folded into the convolutions; channels-last; {kernels}; "
            f"glibc heap kept between frames: {'yes' if malloc_tuned else 'no'}")
