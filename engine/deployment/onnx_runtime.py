"""ONNX Runtime backend: the graphs of an ``--export onnx`` folder behind GSVNet's streaming methods.

    model, meta = load_export("export/")      # checks gsvnet.json and every graph it lists
    predictor = VideoPredictor(model, key_interval=meta["key_interval"], key_scale=meta["key_scale"],
                               fold_bn=False)

``OnnxGSVNet`` implements ``models.propagation_model.PropagationModel`` as GSVNet does, with torch tensors in and
out (CPU), so the host loop (keyframe schedule, kept state, ``.labels``) is the one of the PyTorch backend:
``keyframe(frame, scale)``, ``lowres_bgr(frame)``, ``propagate(prev_logits, prev_lowres, cur_lowres)``,
and ``forward_clip`` / ``evaluating`` for engine/evaluation/. BatchNorm is folded inside the graphs already
(VideoPredictor prepares only a GSVNet).
Frames enter as uint8 (float frames must hold integer values 0–255).

A frame size the export was not checked at is refused with the list of sizes it has (gsvnet.json
``frame_sizes``), also for a dynamic graph. Providers: CPUExecutionProvider by default; any provider
ONNX Runtime reports as available may be named instead (``["CUDAExecutionProvider",
"CPUExecutionProvider"]``, TensorRT likewise): the graphs are plain opset-18 ONNX, inputs and outputs
cross through host memory (no I/O binding). Only the CPU provider is tested.
"""
from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from config.config import Config
from config.dataset_preset import DatasetPreset
from models.gsvnet import lowres_size
from models.propagation_model import PropagationModel

# The format, version 1 (engine/deployment/onnx_export.py writes it)
FORMAT = "gsvnet-onnx/1"
META_NAME = "gsvnet.json"
PARTS = ("lowres", "keyframe", "propagate")
INPUTS = {"lowres": ("frame",), "keyframe": ("frame",), "propagate": ("prev_lowres", "cur_lowres", "prev_logits")}
OUTPUTS = {"lowres": "lowres", "keyframe": "logits", "propagate": "logits"}
# Symbolic shapes written to gsvnet.json (H, W: frame size; C: classes)
SHAPES = {"frame": [1, "H", "W", 3], "lowres": [1, 3, "H//8", "W//8"], "prev_lowres": [1, 3, "H//8", "W//8"],
          "cur_lowres": [1, 3, "H//8", "W//8"], "prev_logits": [1, "C", "H//8", "W//8"],
          "logits": [1, "C", "H//8", "W//8"]}
DTYPES = {"frame": "uint8"}  # everything else float32
REQUIRED_KEYS = ("format", "keyframe_net", "num_classes", "key_interval", "key_scale", "opset", "frame_sizes",
                 "graphs", "class_names", "palette")
CPU = "CPUExecutionProvider"


def size_key(size: Sequence[int]) -> str:
    return f"{int(size[0])}x{int(size[1])}"


def first_line(err: BaseException, limit: int = 300) -> str:
    """The line of an error message that says what failed, without terminal colour codes: the first line,
    or for the exporter's long messages the line under its "## Exception summary"."""
    lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines() if line.strip()]
    if "## Exception summary" in lines[:-1]:
        return lines[lines.index("## Exception summary") + 1][:limit]
    return (lines or [type(err).__name__])[0][:limit]


def read_meta(folder: str | Path) -> dict:
    """gsvnet.json of an export folder, checked: format version, keys, class count, one existing graph
    file per part and frame size. FileNotFoundError / ValueError naming the file otherwise."""
    folder = Path(folder)
    path = folder / META_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; is {folder} a folder written by --export onnx?")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{path}: format {found!r}, this runtime reads {FORMAT!r}; export again with "
                         f"`python main.py --export onnx`")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    classes = meta["num_classes"]
    for name in ("class_names", "palette"):
        if meta[name] is not None and len(meta[name]) != classes:
            raise ValueError(f"{path}: {len(meta[name])} {name} for num_classes={classes}")
    for part in PARTS:
        files = meta["graphs"].get(part, {}).get("files", {})
        for size in meta["frame_sizes"]:
            name = files.get(size_key(size))
            if name is None:
                raise ValueError(f"{path}: no {part} graph listed for {size_key(size)}")
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: {part} graph for {size_key(size)} is missing")
    return meta


def resolve_providers(providers: Sequence[str] | None) -> list[str]:
    """``providers`` (default: CPU only), each checked against what this ONNX Runtime build offers."""
    import onnxruntime as ort
    wanted = list(providers) if providers else [CPU]
    available = ort.get_available_providers()
    unknown = [p for p in wanted if p not in available]
    if unknown:
        raise ValueError(f"ONNX Runtime provider(s) {', '.join(unknown)} not available here; available: "
                         f"{', '.join(available)} (CUDA/TensorRT need the onnxruntime-gpu package)")
    return wanted


def session_options(threads: int | None = None):
    """All graph optimisations; intra-op threads = torch's (both backends use the same cores); idle pool
    threads sleep instead of spinning: three sessions plus torch share the cores, and host code runs
    between the graphs (measured at 1024×2048 on 2 busy cores: non-keyframe step 207 ms spinning, 89 ms not)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _check_session(session, path: Path, part: str, size: Sequence[int], num_classes: int) -> None:
    """Input names as the format says; class channels and, for fixed dims, the 1/8 grid of ``size``."""
    names = [i.name for i in session.get_inputs()]
    if names != list(INPUTS[part]) or session.get_outputs()[0].name != OUTPUTS[part]:
        raise ValueError(f"{path.name}: inputs {names} / output {session.get_outputs()[0].name!r}, expected "
                         f"{list(INPUTS[part])} / {OUTPUTS[part]!r} for the {part} graph")
    out_shape = session.get_outputs()[0].shape
    channels = out_shape[1]
    if part != "lowres" and isinstance(channels, int) and channels != num_classes:
        raise ValueError(f"{path.name}: logits have {channels} classes, gsvnet.json says {num_classes}")
    grid = lowres_size(*size)
    if all(isinstance(d, int) for d in out_shape[2:]) and tuple(out_shape[2:]) != grid:
        raise ValueError(f"{path.name}: gives a {out_shape[2]}x{out_shape[3]} grid, but gsvnet.json lists it "
                         f"for {size_key(size)} frames (grid {grid[0]}x{grid[1]})")


class OnnxGSVNet(PropagationModel):
    """GSVNet's streaming methods on ONNX Runtime sessions (one per graph file, shared across sizes); accepts
    only the frame sizes of the export (``frame_sizes``)."""

    def __init__(self, sessions: dict[str, dict[str, object]], meta: dict):
        self.meta = meta
        self.num_classes = int(meta["num_classes"])
        self.key_scale = float(meta["key_scale"])
        self.segnet_name = meta["keyframe_net"]
        self.frame_sizes = [tuple(int(v) for v in s) for s in meta["frame_sizes"]]
        self._sessions = sessions                       # part -> "HxW" -> session
        self._by_grid = {}                              # 1/8 grid -> a frame size with that grid
        for size in self.frame_sizes:
            self._by_grid.setdefault(lowres_size(*size), size)

    takes_uint8_frames = True  # keyframe() needs no float copy of the frame (VideoPredictor skips x.float())

    @contextlib.contextmanager
    def evaluating(self) -> Iterator["OnnxGSVNet"]:
        """The graphs are inference-only: nothing to switch."""
        yield self

    # --- GSVNet's methods ------------------------------------------------------------------------
    def _run(self, part: str, size: tuple[int, int], feed: dict[str, np.ndarray]) -> Tensor:
        session = self._sessions[part].get(size_key(size))
        if session is None:
            raise ValueError(f"the ONNX export accepts frames of {', '.join(size_key(s) for s in self.frame_sizes)}, "
                             f"not {size_key(size)}; export again with --export-size {size_key(size)}")
        return torch.from_numpy(session.run([OUTPUTS[part]], feed)[0])

    @staticmethod
    def _frame(frame: Tensor) -> np.ndarray:
        """1×3×H×W (VideoPredictor's view of an H×W×3 frame) -> uint8 1×H×W×3, zero-copy for that view.
        A float frame must hold the integer 0–255 values of a uint8 one (VideoPredictor's x.float())."""
        nhwc = np.ascontiguousarray(frame.detach().cpu().permute(0, 2, 3, 1).numpy())
        if nhwc.dtype == np.uint8:
            return nhwc
        with np.errstate(invalid="ignore"):  # NaN or out of range: caught by the comparison below
            as_uint8 = nhwc.astype(np.uint8)  # numpy: ~10x faster than torch's conversion here
        if not np.array_equal(as_uint8, nhwc):
            raise ValueError("the ONNX graphs take uint8 frames; this float frame has values that are not "
                             "integers in 0–255 (resized or normalised before?)")
        return as_uint8

    def _per_frame(self, part: str, frames: Tensor) -> Tensor:
        """B×3×H×W RGB 0–255 -> the part's output for each frame (the graphs take one), concatenated."""
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected RGB frames B×3×H×W, got {tuple(frames.shape)}")
        outs = []
        for frame in frames.split(1):
            x = self._frame(frame)
            outs.append(self._run(part, x.shape[1:3], {"frame": x}))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def keyframe(self, frame: Tensor, scale: float | None = None) -> Tensor:
        """B×3×H×W RGB 0–255 -> keyframe logits B×C×(H//8)×(W//8), at the export's key scale."""
        if scale is not None and float(scale) != self.key_scale:
            raise ValueError(f"the keyframe graph was exported at key scale {self.key_scale}, not {scale}; "
                             f"export again with --eval-scale {scale}")
        return self._per_frame("keyframe", frame)

    def lowres_bgr(self, frame: Tensor) -> Tensor:
        """B×3×H×W RGB 0–255 -> the normalised BGR 1/8 images B×3×(H//8)×(W//8)."""
        return self._per_frame("lowres", frame)

    def propagate(self, prev_logits: Tensor, prev_lowres: Tensor, cur_lowres: Tensor, fusion: str = "gsv") -> Tensor:
        """One non-keyframe step on the 1/8 grid (flow net, warp, GSV) -> B×C×h×w logits. fusion "copy"
        returns prev_logits (as GSVNet does); "warp" alone is not exported."""
        if fusion == "copy":
            return prev_logits
        if fusion != "gsv":
            raise ValueError(f"the exported propagate graph fuses with the GSV; fusion={fusion!r} needs the "
                             f"PyTorch backend")
        grid = tuple(cur_lowres.shape[-2:])
        size = self._by_grid.get(grid)
        if size is None:
            raise ValueError(f"the ONNX export has no propagate graph for a {grid[0]}x{grid[1]} grid; it accepts "
                             f"frames of {', '.join(size_key(s) for s in self.frame_sizes)}")
        outs = []
        for prev_lr_b, cur_lr_b, prev_logits_b in zip(prev_lowres.split(1), cur_lowres.split(1), prev_logits.split(1)):
            feed = {name: np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)
                    for name, t in zip(INPUTS["propagate"], (prev_lr_b, cur_lr_b, prev_logits_b))}
            outs.append(self._run("propagate", size, feed))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def forward_clip(self, frames: Tensor, key_scale: float | None = None, fusion: str = "gsv",
                     grad_steps: int | None = None, key_logits: Tensor | None = None) -> Tensor:
        """GSVNet.forward_clip for evaluation: B×T×3×H×W RGB 0–255 clips (frame 0 the keyframe) -> logits of
        frame T−1, B×C×(H//8)×(W//8). grad_steps is ignored (the graphs are inference-only)."""
        logits = key_logits if key_logits is not None else self.keyframe(frames[:, 0], key_scale)
        prev_lowres = self.lowres_bgr(frames[:, 0])
        for t in range(1, frames.shape[1]):
            cur_lowres = self.lowres_bgr(frames[:, t])
            logits, prev_lowres = self.propagate(logits, prev_lowres, cur_lowres, fusion), cur_lowres
        return logits


def load_export(folder: str | Path, providers: Sequence[str] | None = None,
                threads: int | None = None) -> tuple[OnnxGSVNet, dict]:
    """(OnnxGSVNet, gsvnet.json) of an export folder; every graph file is loaded once and checked."""
    import onnxruntime as ort
    folder = Path(folder)
    meta = read_meta(folder)
    chosen, options = resolve_providers(providers), session_options(threads)
    loaded: dict[str, object] = {}
    sessions: dict[str, dict[str, object]] = {part: {} for part in PARTS}
    for part in PARTS:
        for size in meta["frame_sizes"]:
            name = meta["graphs"][part]["files"][size_key(size)]
            if name not in loaded:
                try:
                    loaded[name] = ort.InferenceSession(str(folder / name), options, providers=chosen)
                except Exception as err:  # ORT raises its own types for unreadable or invalid graphs
                    raise ValueError(f"{folder / name}: ONNX Runtime cannot load it ({first_line(err)})") from err
            _check_session(loaded[name], folder / name, part, size, int(meta["num_classes"]))
            sessions[part][size_key(size)] = loaded[name]
    return OnnxGSVNet(sessions, meta), meta


def onnx_model_for(cfg: Config, preset: DatasetPreset, device: torch.device, key_scale: float) -> "OnnxGSVNet":
    """The graphs of --export-dir on ONNX Runtime (--backend onnxruntime), checked against the run's dataset
    (class count), keyframe scale and fusion."""
    if not cfg.export_dir:
        raise ValueError("--backend onnxruntime needs --export-dir (a folder written by --export onnx)")
    if device.type != "cpu":
        raise ValueError("--backend onnxruntime evaluates on ONNX Runtime's CPU provider; pass --device cpu")
    model, meta = load_export(cfg.export_dir)
    if int(meta["num_classes"]) != preset.num_classes:
        raise ValueError(f"{cfg.export_dir}/gsvnet.json: {meta['num_classes']} classes, but --dataset {cfg.dataset} "
                         f"has {preset.num_classes}")
    if abs(float(meta["key_scale"]) - key_scale) > 1e-9:
        raise ValueError(f"{cfg.export_dir}/gsvnet.json: exported at key scale {meta['key_scale']}, but --eval-scale "
                         f"is {key_scale}")
    if cfg.fusion not in ("gsv", "copy"):
        raise ValueError(f"--backend onnxruntime: the exported propagate graph is GSVNet's; --fusion {cfg.fusion} "
                         f"needs --backend pytorch")
    return model
