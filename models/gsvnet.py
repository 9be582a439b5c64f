"""The GSVNet pipeline: keyframe segmentation, then propagation at 1/8 scale (paper §3, DESIGN.md §4).

Conventions that make the official weights produce the official numbers (each stated once, here):
- Frames enter as RGB float on the 0–255 scale, B×3×H×W.
- Keyframe net: RGB, normalised per net (SwiftNet on 0–255, BiSeNet on 0–1 with ImageNet statistics),
  resized bilinear align_corners=True to (H//4*3, W//4*3) at scale 0.75 (else round(H*s), round(W*s)).
  Its logits are resized bilinear align_corners=True to (H//8, W//8).
- Flow net and GSV see the frame in BGR order, each channel normalised with its own statistic of the
  keyframe net's preset, resized bilinear align_corners=True to (H//8, W//8). The official trained
  weights depend on this quirk.
- Light flow input = cat[current, previous]; FlowNetS = cat[previous, current]. The flow is resized to
  (H//8, W//8) without rescaling its vectors, then divided by FLOW_DIVISOR before the backward warp.
- Everything between frames stays logits at 1/8; no softmax.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from models import cpu_kernels
from models.bisenet import IMAGENET_MEAN, IMAGENET_STD, BiSeNet
from models.flownet import build_flow_net
from models.gsv import GSV
from models.swiftnet import SWIFTNET_MEAN, SWIFTNET_STD, SwiftNet
from models.resize import bilinear_taps, resize, resize_bilinear, shrink_uint8
from models.warp import FLOW_DIVISOR, warp

SEGNETS = ("swiftnet", "bisenet")
FLOWS = ("light", "flownet")
FUSIONS = ("gsv", "warp", "copy")
OUTPUT_STRIDE = 8  # propagation happens on the (H//8, W//8) grid


def segnet_normalisation(segnet: str) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    """(RGB mean, RGB std, divisor applied first) of a keyframe net's input."""
    if segnet == "swiftnet":
        return SWIFTNET_MEAN, SWIFTNET_STD, 1.0
    if segnet == "bisenet":
        return IMAGENET_MEAN, IMAGENET_STD, 255.0
    raise ValueError(f"segnet must be one of {SEGNETS}, got {segnet!r}")


def build_segnet(name: str, num_classes: int) -> nn.Module:
    if name == "swiftnet":
        return SwiftNet(num_classes)
    if name == "bisenet":
        return BiSeNet(num_classes)
    raise ValueError(f"segnet must be one of {SEGNETS}, got {name!r}")


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


class GSVNet(nn.Module):
    """Keyframe net + flow net + GSV. The keyframe net is always used frozen (eval, no grad)."""

    def __init__(self, segnet: nn.Module, flow_net: nn.Module, gsv: nn.Module, *, segnet_name: str,
                 flow_name: str):
        super().__init__()
        if flow_name not in FLOWS:
            raise ValueError(f"flow must be one of {FLOWS}, got {flow_name!r}")
        self.segnet, self.flow_net, self.gsv = segnet, flow_net, gsv
        self.segnet_name, self.flow_name = segnet_name, flow_name
        mean, std, divisor = segnet_normalisation(segnet_name)
        self.seg_divisor = divisor
        self.register_buffer("rgb_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def build(cls, segnet: str = "swiftnet", flow: str = "light", num_classes: int = 19,
              intra: bool = True) -> "GSVNet":
        return cls(build_segnet(segnet, num_classes), build_flow_net(flow), GSV(num_classes, intra=intra),
                   segnet_name=segnet, flow_name=flow)

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
        return (frame / self.seg_divisor - self.rgb_mean) / self.rgb_std

    def lowres_bgr(self, frame: Tensor) -> Tensor:
        """B×3×H×W RGB 0–255 (float, or uint8) -> B×3×(H//8)×(W//8) BGR, each channel with its own statistic."""
        # Shrink first, normalise the 64× smaller result: the same values up to float rounding (the
        # normalisation is a per-channel affine map and bilinear weights sum to 1), far less work.
        size = lowres_size(*frame.shape[-2:])
        if frame.dtype == torch.uint8 and frame.device.type == "cpu" and cpu_kernels.available():
            return self._lowres_bgr_compiled(frame, size)
        small = shrink_uint8(frame, size) if frame.dtype == torch.uint8 else resize(frame, size)
        return self.normalise_rgb(small).flip(1)

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
        return out[0] if isinstance(out, (tuple, list)) else out

    def keyframe(self, frame: Tensor, scale: float = 0.75) -> Tensor:
        """B×3×H×W RGB 0–255 -> keyframe logits B×C×(H//8)×(W//8)."""
        return resize(self.segnet_logits(frame, scale), lowres_size(*frame.shape[-2:]))

    def flow(self, cur_lr: Tensor, prev_lr: Tensor) -> Tensor:
        """Backward flow on the 1/8 grid, in pixels of that grid (raw output / FLOW_DIVISOR)."""
        pair = torch.cat([cur_lr, prev_lr] if self.flow_name == "light" else [prev_lr, cur_lr], dim=1)
        raw = resize_bilinear(self.flow_net(pair), tuple(cur_lr.shape[-2:]))  # vectors deliberately not rescaled
        return raw / FLOW_DIVISOR

    def propagate(self, prev_logits: Tensor, prev_lr: Tensor, cur_lr: Tensor, fusion: str = "gsv") -> Tensor:
        """One non-keyframe step on the 1/8 grid: warp the previous logits, then fuse (paper Eq. 1–2).

        fusion: "gsv" (GSVNet), "warp" (warp only) or "copy" (previous logits unchanged).
        """
        if fusion == "copy":
            return prev_logits
        warped = warp(prev_logits, self.flow(cur_lr, prev_lr))
        if fusion == "warp":
            return warped
        if fusion != "gsv":
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        return self.gsv(warped, cur_lr)[0]

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
        logits, prev_lr = key_logits, self.lowres_bgr(frames[:, 0])
        gsv_training = self.gsv.training
        try:
            for r in range(1, num_steps + 1):
                with_grad = torch.is_grad_enabled() and (grad_steps is None or r > num_steps - grad_steps)
                self.gsv.train(gsv_training and with_grad)
                with torch.set_grad_enabled(with_grad):
                    cur_lr = self.lowres_bgr(frames[:, r])
                    logits = self.propagate(logits, prev_lr, cur_lr, fusion)
                prev_lr = cur_lr
        finally:
            self.gsv.train(gsv_training)
        return logits

    def train(self, mode: bool = True) -> "GSVNet":
        super().train(mode)
        self.segnet.eval()  # frozen keyframe net: BN statistics never move
        return self
