"""``PropagationModel``: the one interface the streaming predictor and the evaluation passes call on a model.

Two classes implement it, explicitly (they name it as a base): ``models.gsvnet.GSVNet`` (PyTorch) and
``engine.deployment.onnx_runtime.OnnxGSVNet`` (the exported graphs on ONNX Runtime). Tensors in and out,
frames RGB 0–255 B×3×H×W, logits and 1/8 images on the 1/8 grid B×C×(H//8)×(W//8).
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol, Sequence

from torch import Tensor


class PropagationModel(Protocol):
    num_classes: int
    takes_uint8_frames: bool  # keyframe() takes the uint8 frame as it is (no float copy needed)
    frame_sizes: Sequence[tuple[int, int]] | None  # the only frame sizes it accepts; None: any size

    def keyframe(self, frame: Tensor, scale: float) -> Tensor:
        """Keyframe logits of frames B×3×H×W at keyframe input scale ``scale``."""
        ...

    def lowres_bgr(self, frame: Tensor) -> Tensor:
        """The normalised BGR 1/8 images of frames B×3×H×W (the flow net's and GSV's input)."""
        ...

    def propagate(self, prev_logits: Tensor, prev_lowres: Tensor, cur_lowres: Tensor, fusion: str = "gsv") -> Tensor:
        """One non-keyframe step on the 1/8 grid; fusion "gsv", "warp" or "copy"."""
        ...

    def forward_clip(self, frames: Tensor, key_scale: float, fusion: str,
                     grad_steps: int | None = None, key_logits: Tensor | None = None) -> Tensor:
        """Logits of the last frame of clips B×T×3×H×W whose first frame is the keyframe."""
        ...

    def evaluating(self) -> AbstractContextManager:
        """A block in which the model predicts (inference behaviour), restoring its mode after."""
        ...
