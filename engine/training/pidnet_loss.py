"""The PIDNet training loss (Xu et al., CVPR 2023, Eq. 9-12), with the weights of the official configs.

Facts from the official code (XuJiacong/PIDNet: ``utils/utils.py`` FullModel, ``utils/criterion.py``,
``datasets/base_dataset.py``, ``configs/{cityscapes,camvid}/*.yaml``):

    loss = 0.4 · CE(p_aux)         BALANCE_WEIGHTS[0]; the P-branch auxiliary head
         + 1.0 · CE(main)          BALANCE_WEIGHTS[1]
         + 20  · wBCE(d, edges)    BondaryLoss coeff_bce; the D-branch boundary head
         + 1.0 · CE(main | σ(d) > 0.8)   SB_WEIGHTS; labels kept only where the D head sees a boundary

- All three outputs are upsampled (bilinear) to the label size first. The official resize uses
  ``config.MODEL.ALIGN_CORNERS``, whose default (True) no config overrides, so ``align_corners=True``.
- Class weights: every CE is class-weighted with the config's own weights (Cityscapes:
  CITYSCAPES_CLASS_WEIGHTS, 0.84–1.15; CamVid: none; see official_class_weights), not GSVNet's
  propagation weights; ignore label 255.
- The aux term is the per-pixel weighted CE averaged over ALL pixels, ignore pixels counting as 0:
  the official criterion returns it unreduced, adds the scalar terms to it and the trainer takes
  the mean. The other CE terms are ordinary weighted means (Σ w·ce / Σ w over valid pixels).
- wBCE: BCE-with-logits over all pixels of the batch, averaged over all of them; boundary pixels
  are weighted by the fraction of non-boundary pixels in the batch and vice versa.
- Edge labels: the official dataset makes them from the label map (uint8 train ids, 255 included) with
  ``cv2.Canny(label, 0.1, 0.2)`` — with such low thresholds, every pixel that survives Canny's
  non-maximum suppression of the 3×3 Sobel gradient is an edge —, zeroes a 6-pixel frame, dilates
  with a 4×4 square and thresholds (> 50). :func:`boundary_targets` computes the same map in torch
  (tests/test_pidnet.py compares it with OpenCV).

Deviations (by default): the official Cityscapes/CamVid configs use OHEM cross-entropy (threshold 0.9,
at least 131072 pixels kept) for the main and the boundary-guided terms; we use plain weighted CE
unless ``ohem=True``. The official pipeline derives edges on the full-resolution label before its
random rescale and crop; without ``boundary=`` we derive them on the training label as given. A
boundary-guided term with no selected pixel is 0 (officially NaN for plain CE, 0 for OHEM).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

AUX_WEIGHT = 0.4          # BALANCE_WEIGHTS = [0.4, 1.0]
MAIN_WEIGHT = 1.0
BOUNDARY_WEIGHT = 20.0    # BondaryLoss(coeff_bce=20.0)
GUIDED_WEIGHT = 1.0       # SB_WEIGHTS
GUIDED_THRESHOLD = 0.8    # sigmoid(d) > 0.8 selects the boundary-guided pixels
OHEM_THRESH = 0.9         # OHEMTHRES
OHEM_MIN_KEPT = 131072    # OHEMKEEP
CITYSCAPES_CLASS_WEIGHTS = (0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023,
                            0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507)



def official_class_weights(layout: str, num_classes: int) -> tuple[float, ...] | None:
    """The CE class weights of the official PIDNet config for a dataset layout: the Cityscapes config's
    CITYSCAPES_CLASS_WEIGHTS for the 19 Cityscapes classes (Cityscapes and the synthetic data, which
    share them); none for CamVid, whose config has none, or for any other class set."""
    if layout == "cityscapes" and num_classes == len(CITYSCAPES_CLASS_WEIGHTS):
        return CITYSCAPES_CLASS_WEIGHTS
    return None


_TAN_SHIFT = 15           # Canny's fixed-point direction test: tan(22.5°) ≈ 13573 / 2**15
_TAN22 = 13573


def _shift(x: Tensor, dy: int, dx: int) -> Tensor:
    """y[..., r, c] = x[..., r + dy, c + dx], zero outside (x: B×H×W)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    return padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def canny_edges(label: Tensor) -> Tensor:
    """Canny(label, 0.1, 0.2) of OpenCV for a B×H×W integer map in 0..255: bool B×H×W.

    3×3 Sobel with replicated borders, L1 magnitude, non-maximum suppression in one of 4 directions
    (OpenCV's fixed-point angle test and its ``>`` / ``>=`` tie rule). Both thresholds floor to 0, so
    every non-zero survivor is a strong edge and hysteresis changes nothing.
    """
    x = label.clamp(0, 255).to(torch.float32).unsqueeze(1)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(xp, sobel.view(1, 1, 3, 3))[:, 0].round().long()   # integers, exact in float32
    gy = F.conv2d(xp, sobel.t().reshape(1, 1, 3, 3))[:, 0].round().long()
    mag = gx.abs() + gy.abs()
    ax, ay = gx.abs(), gy.abs() << _TAN_SHIFT
    tg22 = ax * _TAN22
    horizontal = ay < tg22
    vertical = ay > tg22 + (ax << (_TAN_SHIFT + 1))
    keep_h = (mag > _shift(mag, 0, -1)) & (mag >= _shift(mag, 0, 1))
    keep_v = (mag > _shift(mag, -1, 0)) & (mag >= _shift(mag, 1, 0))
    # diagonal: up-right/down-left when gx and gy differ in sign, else up-left/down-right
    opposite = (gx ^ gy) < 0
    keep_d = torch.where(opposite,
                         (mag > _shift(mag, -1, 1)) & (mag > _shift(mag, 1, -1)),
                         (mag > _shift(mag, -1, -1)) & (mag > _shift(mag, 1, 1)))
    keep = torch.where(horizontal, keep_h, torch.where(vertical, keep_v, keep_d))
    return keep & (mag > 0)


def boundary_targets(label: Tensor, *, dilate: int = 4, border: int = 6) -> Tensor:
    """Official edge labels of a B×H×W train-id map (module docstring): float32 B×H×W in {0, 1}.

    Canny edges, ``border`` pixels at each side cleared, then a ``dilate``×``dilate`` max filter
    anchored as OpenCV's (offsets -dilate//2 .. dilate - 1 - dilate//2 on both axes).
    """
    edges = canny_edges(label).float()
    if border > 0:
        frame = torch.zeros_like(edges)
        frame[..., border:-border, border:-border] = 1.0
        edges = edges * frame
    before = dilate // 2
    padded = F.pad(edges.unsqueeze(1), (before, dilate - 1 - before, before, dilate - 1 - before))
    return F.max_pool2d(padded, dilate, stride=1)[:, 0]


def weighted_boundary_bce(d_logits: Tensor, boundary: Tensor) -> Tensor:
    """Class-balanced BCE of B×1×H×W boundary logits against a B×H×W {0, 1} map, mean over all pixels."""
    target = boundary.to(d_logits.dtype).unsqueeze(1)
    pos, neg = target == 1, target == 0
    total = (pos.sum() + neg.sum()).clamp(min=1).to(d_logits.dtype)
    weight = torch.zeros_like(target)
    weight = torch.where(pos, neg.sum() / total, weight)
    weight = torch.where(neg, pos.sum() / total, weight)
    return F.binary_cross_entropy_with_logits(d_logits, target, weight=weight)


def cross_entropy(logits: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int) -> Tensor:
    """Weighted mean CE (B×C×H×W logits, int64 B×H×W target); 0 (with a graph) if nothing is valid."""
    if not (target != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index)


def ohem_cross_entropy(logits: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int,
                       thresh: float = OHEM_THRESH, min_kept: int = OHEM_MIN_KEPT) -> Tensor:
    """Official OHEM CE: among valid pixels, keep those whose softmax probability of the true class is
    below max(thresh, the (min_kept+1)-th smallest such probability); mean of their weighted CE."""
    pixel = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index
    if not valid.any():
        return logits.sum() * 0.0
    prob = F.softmax(logits, dim=1).gather(1, target.clamp_max(logits.shape[1] - 1).unsqueeze(1))[:, 0]
    prob, pixel = prob[valid], pixel[valid]
    sorted_prob = prob.detach().sort().values
    threshold = max(float(sorted_prob[min(min_kept, sorted_prob.numel() - 1)]), thresh)
    kept = pixel[prob.detach() < threshold]
    return kept.mean() if kept.numel() else logits.sum() * 0.0


def pidnet_loss(outputs: Sequence[Tensor], target: Tensor, *, class_weights: Tensor | None,
                ignore_index: int = 255, boundary: Tensor | None = None, ohem: bool = False,
                align_corners: bool = True) -> tuple[Tensor, dict[str, float]]:
    """Total PIDNet loss (module docstring) and its parts for logging.

    outputs: [p_aux B×C×h×w, main B×C×h×w, d B×1×h×w] logits (the training-form network's output);
    target: int64 B×H×W train ids; boundary: optional precomputed B×H×W {0, 1} edge map (else
    :func:`boundary_targets` of ``target``). Returns (scalar loss, {"aux", "main", "boundary",
    "guided", "loss"} as floats; the parts unweighted).
    """
    if len(outputs) != 3:
        raise ValueError(f"pidnet_loss needs [p_aux, main, d], got {len(outputs)} outputs")
    size = target.shape[-2:]
    p_aux, main, d = (F.interpolate(o.float(), size=size, mode="bilinear", align_corners=align_corners)
                      for o in outputs)
    edges = boundary_targets(target) if boundary is None else boundary
    pixel_aux = F.cross_entropy(p_aux, target, weight=class_weights, ignore_index=ignore_index,
                                reduction="none")
    aux = pixel_aux.mean()  # ignore pixels count (as 0) in the mean, as officially
    semantic = ohem_cross_entropy if ohem else cross_entropy
    main_ce = semantic(main, target, class_weights, ignore_index)
    bce = weighted_boundary_bce(d, edges)
    on_boundary = torch.sigmoid(d[:, 0]) > GUIDED_THRESHOLD
    guided = semantic(main, torch.where(on_boundary, target, torch.full_like(target, ignore_index)),
                      class_weights, ignore_index)
    loss = AUX_WEIGHT * aux + MAIN_WEIGHT * main_ce + BOUNDARY_WEIGHT * bce + GUIDED_WEIGHT * guided
    parts = {"aux": aux, "main": main_ce, "boundary": bce, "guided": guided, "loss": loss}
    return loss, {k: float(v.detach()) for k, v in parts.items()}
