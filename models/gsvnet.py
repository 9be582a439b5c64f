"""The GSVNet pipeline: keyframe segmentation, then propagation at 1/8 scale (paper §3, docs/conventions.md#tensors-between-frames).

The keyframe net is any net models/keyframe_net.py can build, named by its spec string. Conventions
that make the official weights produce the official numbers (each stated once, here):
- Frames enter as RGB float on the 0–255 scale, B×3×H×W.
- Keyframe net: RGB normalised with the kind's statistics (``default_normalisation``) or the caller's
  overrides, resized bilinear align_corners=True to (H//4*3, W//4*3) at scale 0.75 (else round(H*s),
  round(W*s)). Its main logits (``read_logits``, checked by ``check_logits``) are resized bilinear
  align_corners=True to (H//8, W//8).
- Flow net and GSV see the frame in BGR order, each channel normalised with its own statistic of
  ``propagation_normalisation(spec)`` (SwiftNet's or BiSeNet's own preset; ImageNet for every other
  kind), resized bilinear align_corners=True to (H//8, W//8). The official trained weights depend on
  this quirk.
- Light flow input = cat[current, previous]; FlowNetS = cat[previous, current]. The flow is resized to
  (H//8, W//8) without rescaling its vectors, then divided by FLOW_DIVISOR before the backward warp.
- Everything between frames stays logits at 1/8; no softmax.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from models import cpu_kernels
from models.flownet import build_flow_net
from models.gsv import GSV
from models.keyframe_net import (Normalisation, build_keyframe_net, check_logits, default_normalisation,
                                 propagation_normalisation, read_logits)
from models.keyframe_spec import DEFAULT_SPEC, KeyframeNetSpec
from models.names import FLOW_NETS, FUSIONS
from models.propagation_model import PropagationModel
from models.resize import bilinear_taps, resize, resize_bilinear, shrink_uint8
from models.warp import FLOW_DIVISOR, warp

OUTPUT_STRIDE = 8  # propagation happens on the (H//8, W//8) grid
# --segnet-input-range (the scale the keyframe net sees) -> the divisor a 0–255 frame gets first
INPUT_RANGE_DIVISOR = {1: 255.0, 255: 1.0}


def keyframe_normalisation(spec: KeyframeNetSpec, mean: Sequence[float] | None = None,
                           std: Sequence[float] | None = None,
                           input_range: int | None = 0) -> Normalisation:
    """The keyframe net's input statistics: the kind's default with the given parts replaced.

    mean, std: RGB, on the scale the net sees; input_range: 1 = the net sees RGB 0–1, 255 = RGB 0–255,
    0 or None = the kind's own. An empty sequence or None keeps the default.
    """
    base = default_normalisation(spec)
    if input_range not in (0, None, *INPUT_RANGE_DIVISOR):
        raise ValueError(f"keyframe-net input range must be 0 (the kind's), 1 or 255, got {input_range!r}")
    values = {}
    for name, given, default in (("mean", mean, base.mean), ("std", std, base.std)):
        values[name] = tuple(float(v) for v in given) if given else default
        if len(values[name]) != 3:
            raise ValueError(f"keyframe-net input {name} needs 3 values (R G B), got {list(values[name])}")
    if min(values["std"]) <= 0:
        raise ValueError(f"keyframe-net input std must be positive, got {list(values['std'])}")
    divisor = INPUT_RANGE_DIVISOR[input_range] if input_range else base.input_range
    return Normalisation(values["mean"], values["std"], divisor)


def normalisation_dict(norm: Normalisation) -> dict:
    """Plain-typed form stored in checkpoints: RGB mean/std and the divisor of a 0–255 frame."""
    return {"mean": [float(v) for v in norm.mean], "std": [float(v) for v in norm.std],
            "divisor": float(norm.as_divisor())}


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters per part of a GSVNet (keyframe net incl. BiSeNet's aux heads, flow net, GSV) and in total.

    Reference values: SwiftNet-R18 11,797,071; BiSeNet-R18 13,494,777; light flow 186,402; GSV 210,085.
    """
    parts = {name: sum(p.numel() for p in getattr(model, name).parameters())
             for name in ("segnet", "flow_net", "gsv")}
    return {**parts, "total": sum(parts.values())}


def keyframe_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Keyframe-net input size: the official H//4*3 at 0.75, round(H*s) otherwise."""
    if scale == 0.75:
        return height // 4 * 3, width // 4 * 3
    return max(1, round(height * scale)), max(1, round(width * scale))


def lowres_size(height: int, width: int) -> tuple[int, int]:
    return height // OUTPUT_STRIDE, width // OUTPUT_STRIDE


def _unwrapped(module: nn.Module) -> nn.Module:
    return getattr(module, "module", module)  # a DDP-wrapped part holds the module as .module


def _stat_buffer(values: Sequence[float]) -> Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)


class GSVNet(nn.Module, PropagationModel):
    """Keyframe net + flow net + GSV. The keyframe net is always used frozen (eval, no grad).

    spec: the keyframe net's parsed spec (``segnet_name`` its string); keyframe_norm: its input statistics
    (None: the kind's default); num_classes: None = the GSV's. The flow net and GSV inputs use
    ``propagation_normalisation(spec)``, stored as ``seg_divisor``/``rgb_mean``/``rgb_std`` (names
    from the first release, where both statistics were the same). The PyTorch PropagationModel: any frame
    size, keyframes from float frames.
    """
    takes_uint8_frames = False
    frame_sizes = None

    def __init__(self, segnet: nn.Module, flow_net: nn.Module, gsv: nn.Module, *, spec: KeyframeNetSpec,
                 flow_name: str, keyframe_norm: Normalisation | None = None, num_classes: int | None = None):
        super().__init__()
        if flow_name not in FLOW_NETS:
            raise ValueError(f"flow must be one of {FLOW_NETS}, got {flow_name!r}")
        self.segnet, self.flow_net, self.gsv = segnet, flow_net, gsv
        self.spec = spec
        self.segnet_name, self.flow_name = spec.spec, flow_name
        self.num_classes = int(num_classes if num_classes is not None else _unwrapped(gsv).num_classes)
        self.keyframe_norm = keyframe_norm or default_normalisation(self.spec)
        self.propagation_norm = propagation_normalisation(self.spec)
        self.key_divisor = self.keyframe_norm.as_divisor()
        self.register_buffer("key_mean", _stat_buffer(self.keyframe_norm.mean), persistent=False)
        self.register_buffer("key_std", _stat_buffer(self.keyframe_norm.std), persistent=False)
        self.seg_divisor = self.propagation_norm.as_divisor()
        self.register_buffer("rgb_mean", _stat_buffer(self.propagation_norm.mean), persistent=False)
        self.register_buffer("rgb_std", _stat_buffer(self.propagation_norm.std), persistent=False)

    @classmethod
    def build(cls, segnet: KeyframeNetSpec = DEFAULT_SPEC, flow: str = "light", num_classes: int = 19, intra: bool = True, *,
              segnet_mean: Sequence[float] | None = None, segnet_std: Sequence[float] | None = None,
              segnet_input_range: int | None = 0, training_form: bool = False,
              keyframe_net: nn.Module | None = None) -> "GSVNet":
        """A GSVNet for a keyframe-net spec, random init except ``keyframe_net`` (an already built
        and loaded net for ``segnet``). segnet_mean/std/input_range: see :func:`keyframe_normalisation`;
        training_form: build the keyframe net's training form (PIDNet's three outputs)."""
        norm = keyframe_normalisation(segnet, segnet_mean, segnet_std, segnet_input_range)
        if keyframe_net is None:
            keyframe_net = build_keyframe_net(segnet, num_classes, training_form=training_form)
        return cls(keyframe_net, build_flow_net(flow), GSV(num_classes, intra=intra), spec=segnet,
                   flow_name=flow, keyframe_norm=norm, num_classes=num_classes)

    def constructor_args(self) -> dict:
        """What rebuilds this model, as plain types (stored in our checkpoints as ``model_args``)."""
        return {"segnet": self.segnet_name, "num_classes": self.num_classes, "flow": self.flow_name,
                "intra": bool(_unwrapped(self.gsv).intra),
                "keyframe_normalisation": normalisation_dict(self.keyframe_norm),
                "propagation_normalisation": normalisation_dict(self.propagation_norm)}

    def to_channels_last(self) -> "GSVNet":
        """Store the conv weights channels-last (NHWC): same results, several times faster convolutions
        on CPU (oneDNN), especially in training. The GSV's 5-D delay kernels keep their layout."""
        for module in (self.segnet, self.flow_net, *self.gsv.children()):
            if all(p.dim() != 5 for p in module.parameters()):
                module.to(memory_format=torch.channels_last)
        return self

    # --- preprocessing -------------------------------------------------------------------------
    def normalise_rgb(self, frame: Tensor) -> Tensor:
        """B×3×H×W RGB 0–255 -> the keyframe net's normalised RGB input."""
        return (frame / self.key_divisor - self.key_mean) / self.key_std

    def normalise_propagation(self, frame: Tensor) -> Tensor:
        """B×3×H×W RGB 0–255 -> RGB normalised with the flow-net/GSV statistics (still RGB order)."""
        return (frame / self.seg_divisor - self.rgb_mean) / self.rgb_std

    def lowres_bgr(self, frame: Tensor) -> Tensor:
        """B×3×H×W RGB 0–255 (float, or uint8) -> B×3×(H//8)×(W//8) BGR, each channel with its own statistic."""
        # Shrink first, normalise the 64× smaller result: the same values up to float rounding (the
        # normalisation is a per-channel affine map and bilinear weights sum to 1), far less work.
        size = lowres_size(*frame.shape[-2:])
        if frame.dtype == torch.uint8 and frame.device.type == "cpu" and cpu_kernels.available():
            return self._lowres_bgr_compiled(frame, size)
        small = shrink_uint8(frame, size) if frame.dtype == torch.uint8 else resize(frame, size)
        return self.normalise_propagation(small).flip(1)

    def _lowres_bgr_compiled(self, frame: Tensor, size: tuple[int, int]) -> Tensor:
        """lowres_bgr of a uint8 CPU frame in one compiled pass (same arithmetic, same order)."""
        x0, x1, ax = bilinear_taps(frame.shape[-1], size[1])
        y0, y1, ay = bilinear_taps(frame.shape[-2], size[0])
        out = torch.empty((frame.shape[0], 3, *size), dtype=torch.float32)
        cpu_kernels.follow_torch_threads()
        cpu_kernels.shrink_normalise(frame.permute(0, 2, 3, 1).numpy(), y0, y1, ay,
                                     x0, x1, ax, np.float32(self.seg_divisor),
                                     self.rgb_mean.view(3).numpy(), self.rgb_std.view(3).numpy(), out.numpy())
        return out

    # --- the two frame types ---------------------------------------------------------------------
    def segnet_logits(self, frame: Tensor, scale: float) -> Tensor:
        """Raw keyframe-net logits of an RGB 0–255 frame at input scale ``scale`` (1/4 or 1/8 of it)."""
        x = resize(self.normalise_rgb(frame), keyframe_size(*frame.shape[-2:], scale))
        out = self.segnet(x.contiguous(memory_format=torch.channels_last))
        return check_logits(read_logits(self.spec, out), self.num_classes, self.spec)

    def keyframe(self, frame: Tensor, scale: float = 0.75) -> Tensor:
        """B×3×H×W RGB 0–255 -> keyframe logits B×C×(H//8)×(W//8)."""
        return resize(self.segnet_logits(frame, scale), lowres_size(*frame.shape[-2:]))

    def flow(self, cur_lowres: Tensor, prev_lowres: Tensor) -> Tensor:
        """Backward flow on the 1/8 grid, in pixels of that grid (raw output / FLOW_DIVISOR)."""
        pair = torch.cat([cur_lowres, prev_lowres] if self.flow_name == "light" else [prev_lowres, cur_lowres], dim=1)
        raw = resize_bilinear(self.flow_net(pair), tuple(cur_lowres.shape[-2:]))  # vectors deliberately not rescaled
        return raw / FLOW_DIVISOR

    def propagate(self, prev_logits: Tensor, prev_lowres: Tensor, cur_lowres: Tensor, fusion: str = "gsv") -> Tensor:
        """One non-keyframe step on the 1/8 grid: warp the previous logits, then fuse (paper Eq. 1–2).

        fusion: "gsv" (GSVNet), "warp" (warp only) or "copy" (previous logits unchanged).
        """
        if fusion == "copy":
            return prev_logits
        warped = warp(prev_logits, self.flow(cur_lowres, prev_lowres))
        if fusion == "warp":
            return warped
        if fusion != "gsv":
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        return self.gsv(warped, cur_lowres)[0]

    # --- clips (training and evaluation) ---------------------------------------------------------
    def forward_clip(self, frames: Tensor, key_scale: float = 0.75, fusion: str = "gsv",
                     grad_steps: int | None = None, key_logits: Tensor | None = None) -> Tensor:
        """Predict the last frame of a clip whose first frame is the keyframe.

        frames: B×T×3×H×W RGB 0–255. Returns logits B×C×(H//8)×(W//8) of frame T−1.
        grad_steps: only the last ``grad_steps`` propagation steps build a graph, earlier ones run
        under no_grad with the GSV in eval mode (official "train only the last two"); None = all.
        key_logits: precomputed keyframe logits at 1/8 (cache), skipping the keyframe net.
        """
        num_steps = frames.shape[1] - 1
        if key_logits is None:
            with torch.no_grad():
                key_logits = self.keyframe(frames[:, 0], key_scale)
        logits, prev_lowres = key_logits, self.lowres_bgr(frames[:, 0])
        gsv_training = self.gsv.training
        try:
            for r in range(1, num_steps + 1):
                with_grad = torch.is_grad_enabled() and (grad_steps is None or r > num_steps - grad_steps)
                self.gsv.train(gsv_training and with_grad)
                with torch.set_grad_enabled(with_grad):
                    cur_lowres = self.lowres_bgr(frames[:, r])
                    logits = self.propagate(logits, prev_lowres, cur_lowres, fusion)
                prev_lowres = cur_lowres
        finally:
            self.gsv.train(gsv_training)
        return logits

    @contextlib.contextmanager
    def evaluating(self) -> Iterator["GSVNet"]:
        """Eval mode inside the block, the previous mode after it."""
        was_training = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was_training)

    def train(self, mode: bool = True) -> "GSVNet":
        super().train(mode)
        self.segnet.eval()  # frozen keyframe net: BN statistics never move
        return self
