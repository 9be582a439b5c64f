"""The one run configuration: a dataclass, and the argparse CLI built from its fields.

Defaults follow the official GSVNet code (docs/deviations.md) except where noted in the help text.
Every field carries its help string in ``metadata["help"]``; the parser shows the default next to it.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from models.keyframe_spec import DEFAULT_SPEC, KeyframeNetSpec, parse_spec
from models.names import FLOW_NETS, FUSIONS

DATASETS = ("synthetic", "cityscapes_2k", "cityscapes", "camvid", "folder", "vspw")
# The modes, the one list: each is a field of Config (its flag) and a module modes/<name>.py with ``run(cfg)``.
# When several are set validate() refuses; DEFAULT_MODE runs when none is.
MODES = ("export", "benchmark_video", "benchmark", "inference", "evaluate", "train_segnet")
DEFAULT_MODE = "train"


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field whose help text feeds argparse."""
    meta = {"help": help, **{k: kw.pop(k) for k in ("choices", "flag", "nargs", "type", "action") if k in kw}}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Config:
    # --- mode -------------------------------------------------------------------------------
    evaluate: bool = _f(False, "Only evaluate (avg/min mIoU per keyframe interval), no training.")
    inference: bool = _f(False, "Only predict: write colour/label PNGs and an overlay video for --input.")
    benchmark: bool = _f(False, "Only measure throughput and FLOPs per frame type (see --bench-*).")
    train_segnet: bool = _f(False, "Train the keyframe network itself on the annotated frames (needed when no "
                                   "pretrained SwiftNet/BiSeNet weights exist, e.g. on the synthetic data).")
    # --- networks -----------------------------------------------------------------------------
    segnet: KeyframeNetSpec = _f(DEFAULT_SPEC, "Keyframe network spec: swiftnet | bisenet | pidnet_s | pidnet_m | pidnet_l | "
                                 "torchvision:<builder> | hf:<folder or hub id> | module:<dotted.path>:<factory>.")
    segnet_mean: list = _f([], "Keyframe-net input mean R G B (default: the kind's own; ImageNet for generic kinds).",
                           nargs=3,
                           type=float)
    segnet_std: list = _f([], "Keyframe-net input std R G B (default: the kind's own; ImageNet for generic kinds).",
                          nargs=3, type=float)
    segnet_input_range: int = _f(0, "Keyframe-net input scale before mean/std: 1 = RGB 0-1 (ImageNet style), "
                                    "255 = RGB 0-255; 0 = the kind's default.", choices=(0, 1, 255))
    optical_flow_network: str = _f("light", "Flow network: the paper's light net or FlowNetS.", choices=FLOW_NETS)
    segnet_weights: str = _f("", "Keyframe-net weights (official file as downloaded, or ours; for hf: a "
                                 "save_pretrained folder). Empty: built-in nets read their official file, e.g. "
                                 "weights/cityscapes-swnet-R18.pt (missing = error); torchvision:/module: nets start "
                                 "random with a warning; hf: nets use their folder's weights.")
    flow_weights: str = _f("", "FlowNetS weights to start from (official flownet.pth.tar); loaded non-strictly "
                               "with missing/unexpected keys reported. Unused by the light net.")
    intra: bool = _f(True, "Use the intra-frame branch of GSV. 0 = the paper's Table 4 ablation.")
    freeze_bn: bool = _f(False, "Keep the BatchNorm statistics of the trained modules frozen (eval-mode BN).")
    key_scale: float = _f(0.75, "Keyframe input scale during training and its per-epoch validation "
                                 "(--evaluate and --inference use --eval-scale).")
    eval_scale: float = _f(0.75, "Keyframe input scale of --evaluate and --inference (derivative's flag; "
                                  "0.75 = the official H//4*3).")
    key_interval: int = _f(3, "Keyframe interval l for --inference, the streaming predictor and the whole-clip "
                              "consistency pass of --evaluate (TC, mVC: keyframes at frames 0, l, 2l, ... of each clip).")
    keyframe_policy: str = _f("fixed", "Keyframe schedule of --inference: 'fixed' (every --key-interval frames, the "
                                       "paper's protocol) or 'adaptive' (also extra keyframes, never more than the "
                                       "schedule's own, when the 1/8 images say the scene cut or drifted away from "
                                       "the last keyframe). --evaluate always uses 'fixed'.",
                              choices=("fixed", "adaptive"))
    scene_threshold: float = _f(0.0, "Scene-change score (against the previous frame) above which --keyframe-policy "
                                     "adaptive inserts a keyframe; the drift threshold (against the last keyframe) "
                                     "is never below it. 0 = the calibrated default (README, 'Temporal consistency and scene cuts').")
    # --- data ---------------------------------------------------------------------------------
    dataset: str = _f("synthetic", "Dataset preset. 'synthetic' (the embedded default) is generated by "
                                   "`python -m dataset.synthetic` / `make demo`; 'folder' = your own clips "
                                   "(ROOT/classes.json + ROOT/<split>/<clip>/origin|mask/, docs/formats.md), "
                                   "'vspw' = VSPW_480p as shipped.", choices=DATASETS)
    data_path: str = _f("", "Dataset root. Empty: the preset's default (./data/<dataset>).")
    multi_step: list = _f([1, 2, 3, 4], "Training distances k (clip = frames GT-k..GT), one pass each per epoch.",
                          nargs="+")
    eval_multi_step: list = _f([1, 2, 3, 4], "Evaluated distances k >= 1 (k = 0 is added by --eval-single). "
                                             "'1 2' gives the paper's l=3 (avg over k=0,1,2; min = k=2).",
                               nargs="+")
    eval_single: bool = _f(True, "Also evaluate distance 0 (keyframe only).")
    dense_labels: bool = _f(False, "Synthetic only: train on every frame, labelled from the generator's per-frame "
                                   "labels (evaluation still scores the annotated frames only).")
    pseudo_labels: bool = _f(False, "Label-free: the frozen keyframe net is the teacher (docs/training.md#label-free-"
                                    "training). Training: every frame with k predecessors (clip folders; no mask/ "
                                    "needed) is a sample, its CE target the keyframe net's prediction at --key-scale, "
                                    "computed once and cached in the run folder. --evaluate: scores AGREEMENT with the "
                                    "keyframe net on every scored frame, not accuracy.")
    crop_height: int = _f(0, "Training crop height. 0 = 3/4 of the dataset frame height (768 on Cityscapes; "
                             "folder/vspw: of the smallest training frame, rounded).")
    crop_width: int = _f(0, "Training crop width. 0 = 3/4 of the dataset frame width (1536 on Cityscapes; "
                            "folder/vspw: of the smallest training frame, rounded).")
    train_scales: list = _f([], "Training scales, one drawn per clip before the crop. Empty: the preset's "
                                "(0.75 1.0 1.5 1.75 2.0, the official set).", nargs="+", type=float)
    use_crop: bool = _f(True, "Random scale/crop/flip augmentation (one draw per clip).")
    num_worker: int = _f(2, "DataLoader worker processes (official default 4; this machine has 2 cores).")
    # --- optimisation -------------------------------------------------------------------------
    batch_size: int = _f(8, "Global batch size, divided among processes (as officially). Also used in eval.")
    epoch: int = _f(100, "Number of training epochs.")
    lr: float = _f(0.01, "LR of the intra-frame net. The paper's text says 0.002.")
    guide_lr: float = _f(0.04, "LR of the guiding network.")
    optical_flow_lr: float = _f(1e-4, "LR of the flow network.")
    segnet_lr: float = _f(1e-3, "LR of the keyframe net with --train-segnet 1 (Adam, poly decay).")
    lr_gamma: float = _f(0.992, "StepLR gamma, applied every --step-scheduler iterations.")
    step_scheduler: int = _f(100, "StepLR step size in iterations.")
    weight_decay: float = _f(5e-4, "SGD weight decay (all groups).")
    optim: str = _f("sgd", "Optimizer of the propagation modules: SGD (Nesterov, momentum 0.9) or Adam.",
                    choices=("sgd", "adam"))
    param_ce: float = _f(10.0, "Multiplier on the whole loss: param_ce * (CE + param_ce_distil * KL).")
    param_ce_distil: float = _f(10.0, "Weight of the distillation KL (mean over all elements, as officially).")
    distil: bool = _f(True, "Distil from the frozen keyframe net on the last frame of each clip.")
    class_weights: bool = _f(True, "Weight the CE by the preset's class weights, as the official trainer always "
                                   "does (0 = unweighted).")
    train_optical_flow: bool = _f(True, "Train the flow net end to end (0 = frozen).")
    finetune_all: bool = _f(False, "Backpropagate through every propagation step (0 = only the last two).")
    cache_keyframes: bool = _f(False, "Demo shortcut: cache the frozen keyframe net's logits per clip (needs "
                                      "--use-crop 0, i.e. no random augmentation).")
    gsv_init: str = _f("official", "Start of a fresh GSV: the official Xavier init, or 'skip' (the guide's last BN "
                                   "biased so the fusion starts as the warped logits; faster to train).",
                       choices=("official", "skip"))
    pretrain_flow: str = _f("none", "Demo shortcut: pre-train the light flow net before end-to-end training on "
                                    "'true' synthetic flow or OpenCV 'dis' flow.", choices=("none", "true", "dis"))
    pretrain_flow_iters: int = _f(300, "Iterations of --pretrain-flow.")
    amp: bool = _f(False, "Automatic mixed precision: fp16 (with GradScaler) on CUDA; bf16 on a CPU with native "
                             "bf16 (AVX512_BF16/AMX), else fp32 (said once: emulated bf16 is ~40x slower).")
    seed: int = _f(1, "Random seed (-1: no seeding). Each rank adds its rank.")
    early_stop: bool = _f(False, "Debug: stop each loader after a few iterations (as officially).")
    max_iters: int = _f(0, "Stop each training epoch after this many iterations (0 = full epoch).")
    time_budget: float = _f(0.0, "Stop training (either stage) once this many wall-clock seconds of training have "
                                 "passed, after the current iteration, and save (0 = no limit). Used to give "
                                 "keyframe nets equal budgets (`make keyframes`).")
    max_eval_samples: int = _f(0, "Evaluate only the first N annotated frames (0 = all).")
    # --- evaluation / outputs -----------------------------------------------------------------
    keyframe_only: bool = _f(False, "--evaluate: score the keyframe net alone on every annotated frame at "
                                    "--eval-scale (the image-segmentation baseline rows); no GSVNet checkpoint needed.")
    fusion: str = _f("gsv", "Propagation at evaluation: gsv (GSVNet), warp (flow warp only) or copy "
                            "(keyframe logits reused) — the baselines.", choices=FUSIONS)
    save_res: bool = _f(False, "Save each evaluated prediction (Cityscapes labelIds PNG + colour PNG per k).")
    save_seq_res: bool = _f(False, "Also save the prediction of every frame of each evaluated clip.")
    ResFolderName: str = _f("", "Sub-folder for saved predictions / this eval run. Empty: a timestamp.")
    input: str = _f("", "--inference source: a video file, an image folder, a camera id, or 'val'/'test' "
                        "(a dataset split).")
    output: str = _f("", "--inference output folder. Empty: logs/pred_img_res/<dataset>/<segnet>_<checkname>/...")
    save_labelids: bool = _f(False, "--inference: also write Cityscapes labelIds PNGs (alias for adding labelIds "
                                    "to --save).")
    save: str = _f("color,label,overlay", "--inference outputs, comma-separated from color,label,overlay,labelIds; "
                                          "'none' = pure throughput (only summary.json).")
    skip_existing: bool = _f(False, "--inference over a corpus: skip videos whose outputs are already complete.")
    video_codec: str = _f("auto", "Codec of the overlay video: h264 (H.264 MP4 that browsers and phones play; needs "
                                  "PyAV, pip install av), mp4v (OpenCV's MPEG-4 Part 2, plays in VLC but not in "
                                  "browsers), auto = h264 when PyAV is installed, else mp4v with a note.",
                          choices=("auto", "h264", "mp4v"))
    temporal_consistency: int = _f(-1, "Temporal consistency (TC) next to mIoU: 1 on, 0 off, -1 = the mode's "
                                       "default (on for --evaluate, off for --inference).", choices=(-1, 0, 1))
    # --- runs, logs, checkpoints -------------------------------------------------------------
    checkname: str = _f("test", "Run name; the run folder is logs/run/<dataset>/<segnet>_<checkname>/.")
    log_folder: str = _f("./logs", "Root of run folders, TensorBoard summaries and predictions.")
    resume: str = _f("0", "0: fresh. 1: this run's checkpoint.pth.tar, else weights/gsvnet_<swnet|bisenet>_r18.tar. "
                          "PATH: that file (official GSVNet checkpoint or ours).")
    reset_best_pred: bool = _f(False, "On resume, forget the best score stored in the checkpoint.")
    load_flow: bool = _f(True, "On resume, also load the flow net (state_dict_of).")
    eval_interval: int = _f(1, "Evaluate every N epochs during training.")
    device: str = _f("auto", "cpu, cuda, cuda:N, or auto (cuda if available).")
    # --- benchmark ----------------------------------------------------------------------------
    bench_height: int = _f(1024, "Benchmark frame height.")
    bench_width: int = _f(2048, "Benchmark frame width.")
    bench_repeats: int = _f(10, "Timed repeats per frame type (median reported) after warm-up.")
    bench_scales: list = _f([0.5, 0.75, 1.0], "Keyframe scales timed by the benchmark.", nargs="+")
    bench_stream_frames: int = _f(0, "Also stream this many frames through VideoPredictor and record memory per "
                                     "frame (flat = no growth). `make bench` uses 300.")
    benchmark_video: str = _f("", "Time the whole --inference job on this video per --bench-key-intervals and "
                                  "write results/bench_video_<device>.{md,json}.")
    bench_key_intervals: list = _f([1, 3, 4], "Keyframe intervals of --benchmark-video.", nargs="+")
    results_dir: str = _f("results", "Where the benchmark writes its markdown table and JSON.")
    # --- deployment -------------------------------------------------------------------------
    export: str = _f("", "Export the model instead of running a mode: 'onnx' writes lowres/keyframe/propagate "
                         "graphs + gsvnet.json into --output.", choices=("", "onnx"))
    export_size: list = _f([], "Frame size HxW the exported graphs must accept; repeat for several sizes "
                               "(default 1024x2048).", action="append", type=str)
    backend: str = _f("pytorch", "Runtime of --inference/--evaluate/--benchmark: eager PyTorch or ONNX Runtime "
                                 "graphs from --export-dir.", choices=("pytorch", "onnxruntime"))
    export_dir: str = _f("", "Folder of an --export onnx run, for --backend onnxruntime (--benchmark exports to a "
                             "temporary folder when empty).")
    # --- distributed --------------------------------------------------------------------------
    local_rank: int = _f(0, "Set by torch.distributed.launch (also --local-rank); torchrun uses LOCAL_RANK.")

    def __post_init__(self) -> None:
        """The --segnet string is parsed here, once, where it enters (ValueError if malformed)."""
        if isinstance(self.segnet, str):
            self.segnet = parse_spec(self.segnet)


def str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("1", "true", "t", "yes", "y"):
        return True
    if v in ("0", "false", "f", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (0/1/true/false), got {value!r}")


def _flag(name: str) -> str:
    return "--ResFolderName" if name == "ResFolderName" else "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="GSVNet: train the propagation modules, evaluate avg/min mIoU and FPS, or run inference.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(Config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kw: dict[str, Any] = {"help": f.metadata["help"], "default": default, "dest": f.name}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if f.type in ("bool", bool):
            kw.update(type=str2bool, metavar="{0,1}")
        elif f.metadata.get("action") == "append":  # every occurrence counts (not last-one-wins)
            kw.update(action="append", type=f.metadata.get("type", str), default=None)
        elif f.type in ("list", list):
            kw.update(nargs=f.metadata.get("nargs", "+"),
                      type=f.metadata.get("type") or (float if isinstance(default[0], float) else int))
        elif f.type in ("int", int):
            kw["type"] = int
        elif f.type in ("float", float):
            kw["type"] = float
        flags = [_flag(f.name)]
        if f.name == "local_rank":
            flags = ["--local_rank", "--local-rank"]
        elif "_" in f.name and f.name != "ResFolderName":
            flags.append("--" + f.name)  # official underscore spellings keep working
        parser.add_argument(*flags, **kw)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> Config:
    args = build_parser().parse_args(argv)
    try:
        cfg = Config(**{k: ([] if v is None and k == "export_size" else v) for k, v in vars(args).items()})
    except ValueError as err:  # the --segnet spec (the only field parsed on construction)
        raise SystemExit(f"error: --segnet: {err}") from None
    if "LOCAL_RANK" in os.environ:
        cfg.local_rank = int(os.environ["LOCAL_RANK"])
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Reject flag combinations that cannot work, naming the flags."""
    modes = [n for n in MODES if getattr(cfg, n)]
    if len(modes) > 1:
        raise SystemExit(f"error: choose one of {'/'.join(_flag(m) for m in MODES)}, got {modes}")
    if any(k < 1 for k in cfg.multi_step) or any(k < 1 for k in cfg.eval_multi_step):
        raise SystemExit("error: --multi-step and --eval-multi-step take distances >= 1")
    if cfg.inference and not cfg.input:
        raise SystemExit("error: --inference 1 needs --input (a video file, an image folder, a camera id, or val/test)")
    if cfg.cache_keyframes and cfg.use_crop:
        raise SystemExit("error: --cache-keyframes 1 needs --use-crop 0 (random crops change the keyframe logits)")
    if cfg.pseudo_labels and (cfg.train_segnet or cfg.backend != "pytorch"):
        raise SystemExit("error: --pseudo-labels 1 distils the PyTorch keyframe net into the propagation modules: "
                         "not with --train-segnet 1 or --backend onnxruntime")
    if any(s <= 0 for s in cfg.train_scales):
        raise SystemExit("error: --train-scales must be positive")
    if cfg.key_interval < 1:
        raise SystemExit("error: --key-interval must be >= 1")
    for name in ("key_scale", "eval_scale"):
        if not 0 < getattr(cfg, name) <= 2:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be in (0, 2]")


def mode_of(cfg: Config) -> str:
    """The mode the flags choose: the first of MODES that is set, else DEFAULT_MODE."""
    return next((m for m in MODES if getattr(cfg, m)), DEFAULT_MODE)


def to_dict(cfg: Config) -> dict:
    """The Config as plain types (config.json, checkpoints): the keyframe-net spec as its string."""
    return {**dataclasses.asdict(cfg), "segnet": cfg.segnet.spec}
