"""Streaming inference: ``VideoPredictor`` (docs/architecture.md#public-python-api), one frame at a time.

    p = VideoPredictor.from_checkpoints(segnet="swiftnet", flow="light", num_classes=19,
                                        segnet_weights=..., checkpoint=..., key_interval=3)
    # segnet: any keyframe-net spec (pidnet_s, torchvision:<builder>, hf:<folder>, module:<path>:<factory>)
    out = p.step(frame)      # np.uint8 H×W×3 RGB
    out.logits, out.labels, out.is_keyframe

Every ``key_interval``-th frame (and the first frame, and any frame whose size differs from the
previous one) goes through the keyframe net; the others are propagated at 1/8 scale. The previous
frame's 1/8 image is kept, never recomputed (and the last keyframe's, for the adaptive policy).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from engine.streaming.keyframe_policy import SCORE_THRESHOLD, KeyframePolicy, scene_change_score
from engine.model_builder import assemble_model
from engine.deployment.onnx_runtime import load_export
from models.bn_fold import fold_batchnorm
from models.gsvnet import GSVNet
from models.keyframe_spec import parse_spec
from models.labels import logits_to_labels
from models.propagation_model import PropagationModel


@dataclass
class StepOutput:
    """One frame's prediction. ``labels`` (np.uint8 H×W train ids) is computed when first accessed."""

    logits: Tensor            # 1×C×(H//8)×(W//8), on the predictor's device
    is_keyframe: bool
    frame_size: tuple[int, int]
    scene_score: float | None = None  # the adaptive policy's scene-change score of this frame (else None)
    drift_score: float | None = None  # ... against the last keyframe, where the policy needed it (else None)
    _labels: np.ndarray | None = field(default=None, repr=False)

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = logits_to_labels(self.logits, self.frame_size)[0].cpu().numpy()
        return self._labels


class VideoPredictor:
    """Keyframe → propagate streaming predictor around a PropagationModel: a :class:`GSVNet` or its ONNX
    export on ONNX Runtime (``from_export``)."""

    def __init__(self, model: PropagationModel, key_interval: int = 3, key_scale: float = 0.75,
                 device: str | torch.device = "cpu", fusion: str = "gsv", fold_bn: bool = True,
                 keyframe_policy: str = "fixed", scene_threshold: float | None = None):
        """fold_bn: run a copy of ``model`` with BatchNorm folded into the convolutions (same outputs up
        to float rounding, faster); False runs ``model`` itself (moved to ``device``, eval mode).
        keyframe_policy: "fixed" (a keyframe every ``key_interval`` frames, the paper's protocol) or
        "adaptive" (also one, within a bounded budget, when the 1/8 images say the scene changed at once
        or gradually since the last keyframe; engine/streaming/keyframe_policy.py); scene_threshold: the adaptive
        policy's hard-cut threshold (None: the calibrated default)."""
        self.policy = KeyframePolicy(key_interval, keyframe_policy,
                                     SCORE_THRESHOLD if scene_threshold is None else scene_threshold)
        self.device = torch.device(device)
        if isinstance(model, GSVNet):  # the PyTorch model, prepared here; an ONNX export comes prepared
            model = model.to(self.device)
            if fold_bn:
                model, _ = fold_batchnorm(model)
            model = model.eval().to_channels_last()
        self.model: PropagationModel = model
        self.key_interval, self.key_scale, self.fusion = key_interval, key_scale, fusion
        self.reset()

    @classmethod
    def from_checkpoints(cls, segnet: str | None = None, flow: str | None = None, num_classes: int | None = None,
                         segnet_weights: str | None = None, checkpoint: str | None = None,
                         key_interval: int = 3, key_scale: float = 0.75, device: str = "cpu",
                         flow_weights: str | None = None, fusion: str = "gsv", fold_bn: bool = True,
                         segnet_mean: Sequence[float] | None = None, segnet_std: Sequence[float] | None = None,
                         segnet_input_range: int = 0, keyframe_policy: str = "fixed",
                         scene_threshold: float | None = None) -> "VideoPredictor":
        """Build through engine.model_builder.assemble_model from a keyframe-net spec (any kind), its
        weights (official or ours; an hf: folder carries its own) and an official or our GSVNet checkpoint.

        segnet/flow/num_classes None: what the checkpoint records, else swiftnet / light / 19, so one of
        our checkpoints rebuilds its model alone. None for ``segnet_weights``/``checkpoint`` leaves that
        part randomly initialised (with a warning), except an hf: net, which keeps its folder's weights.
        """
        spec = parse_spec(segnet) if segnet is not None else None  # the public API takes the spec string
        model, _ = assemble_model(spec, flow, num_classes, segnet_weights=segnet_weights, checkpoint=checkpoint,
                                  flow_weights=flow_weights, segnet_mean=segnet_mean, segnet_std=segnet_std,
                                  segnet_input_range=segnet_input_range, missing_segnet="warn")
        if not checkpoint:
            warnings.warn("VideoPredictor: no GSVNet checkpoint given; flow net and GSV are random")
        return cls(model, key_interval=key_interval, key_scale=key_scale, device=device, fusion=fusion,
                   fold_bn=fold_bn, keyframe_policy=keyframe_policy, scene_threshold=scene_threshold)

    @classmethod
    def from_export(cls, folder: str, key_interval: int | None = None, providers: Sequence[str] | None = None,
                    keyframe_policy: str = "fixed", scene_threshold: float | None = None) -> "VideoPredictor":
        """The graphs of an ``--export onnx`` folder on ONNX Runtime (engine/deployment/onnx_runtime.py) in the
        same host loop; ``.logits`` stays a (CPU) torch tensor. key_interval None: the one recorded in gsvnet.json.
        providers: ONNX Runtime execution providers (None: CPU; e.g. ["CUDAExecutionProvider"] where
        installed)."""
        model, meta = load_export(folder, providers)
        return cls(model, key_interval=key_interval or int(meta["key_interval"]), key_scale=float(meta["key_scale"]),
                   fold_bn=False, keyframe_policy=keyframe_policy, scene_threshold=scene_threshold)

    def reset(self) -> None:
        """Forget the previous frame: the next step() is a keyframe."""
        self._index = 0
        self._prev_logits: Tensor | None = None
        self._prev_lowres: Tensor | None = None
        self._key_lowres: Tensor | None = None    # the last keyframe's 1/8 image (the adaptive policy's drift)
        self._size: tuple[int, int] | None = None

    def _to_tensor(self, frame: np.ndarray) -> Tensor:
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"step() expects an RGB np.ndarray H×W×3, got "
                             f"{getattr(frame, 'shape', type(frame))}")
        if frame.dtype != np.uint8:
            raise ValueError(f"step() expects dtype uint8, got {frame.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device)
        return t.permute(2, 0, 1).unsqueeze(0)  # 1×3×H×W uint8 view; only keyframes need all of it as float

    @torch.inference_mode()
    def step(self, frame: np.ndarray) -> StepOutput:
        """Predict one RGB uint8 H×W×3 frame: a keyframe (first frame, new frame size, the policy's
        schedule or a scene change) or a propagation step from the previous frame."""
        x = self._to_tensor(frame)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        lowres, score, drift = None, None, None
        if self._prev_logits is None or size != self._size:
            is_key = self.policy.is_keyframe(0)        # a new stream for the policy too (budget reset)
        else:
            lowres = self.model.lowres_bgr(x)
            if self.policy.mode == "adaptive":
                score = scene_change_score(self._prev_lowres, lowres)
                if self.policy.wants_drift(self._index, score):
                    drift = scene_change_score(self._key_lowres, lowres)
            is_key = self.policy.is_keyframe(self._index, score, drift)
        if is_key:
            self._index = 0
            logits = self.model.keyframe(x if self.model.takes_uint8_frames else x.float(), self.key_scale)
            lowres = self.model.lowres_bgr(x) if lowres is None else lowres
        else:
            logits = self.model.propagate(self._prev_logits, self._prev_lowres, lowres, self.fusion)
        self._prev_logits, self._prev_lowres, self._size = logits, lowres, size
        self._key_lowres = lowres if is_key else self._key_lowres
        self._index += 1
        return StepOutput(logits=logits, is_keyframe=is_key, frame_size=size, scene_score=score, drift_score=drift)
