"""Guided spatially-varying convolution (GSV), the fusion step of every non-keyframe (paper §3.2,
docs/architecture.md#the-per-frame-pipeline, docs/deviations.md#model).

For the warped previous logits X (B×C×h×w, 1/8 grid) and the current frame (BGR-normalised, h×w):

    candidates X_0..X_9 = X, its 8 neighbours in raster order (zeros entering at the borders), 0
    X_10              = intra-frame logits of the current frame (3-layer net), if ``intra``
    w                 = ReLU(guide(cat[X_10 (or X without intra), edge]))       B×K×h×w, K = 11 (10)
    w                 = w / (Σ_k w_k + 1e-9)          (normalised by sum, not softmax; official)
    out               = Σ_k w_k · X_k                  (one weight per pixel and candidate, all classes)

edge = 1 where the 3×3 Laplacian (zero padding) of argmax(X) is non-zero — the official binarisation,
which the released weights depend on (the paper writes a sigmoid). Known quirks kept for weight
compatibility: the edge depends on class numbering, marks the image border for non-zero classes and
misses boundaries whose differences cancel; candidate 9 is always zero and only absorbs weight mass.

Module/parameter names equal the official ones without the "grm." prefix, so checkpoints load as is.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from models import cpu_kernels
from models.resize import resize_bilinear

# Off-centre taps (row, col) of a 3×3 window in raster order = official ideal-delay kernels 0..7.
SHIFT_TAPS = ((0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2))
NUM_DELAY_KERNELS = 9  # 8 one-hot kernels + one all-zero kernel (official "move_filter")
GUIDE_WIDTH = 32  # official guide_filter, fixed
GUIDE_SIZE_MULTIPLE = 4  # two stride-2 levels + a residual add need h, w divisible by 4
NORM_EPS = 1e-9


def canonical_delay_kernels(dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The official ideal-delay kernels, (9,1,1,3,3): one-hot at each SHIFT_TAPS position, kernel 8 zero."""
    k = torch.zeros(NUM_DELAY_KERNELS, 3, 3, dtype=dtype, device=device)
    for m, (i, j) in enumerate(SHIFT_TAPS):
        k[m, i, j] = 1
    return k.view(NUM_DELAY_KERNELS, 1, 1, 3, 3)


class IdealDelayKernels(nn.Module):
    """Holds the (loadable, frozen) official kernels and builds the 10 shift candidates without conv3d.

    With the canonical kernels (the official init and the released checkpoint) candidates 1..8 are
    slices of the zero-padded map and candidate 9 is zero. If a checkpoint holds other kernels, or the
    kernels are made trainable, an exact general path is used instead (conv2d over the 3×3 taps).
    """

    def __init__(self) -> None:
        super().__init__()
        self.filter_copy_s = nn.Parameter(canonical_delay_kernels(), requires_grad=False)
        self._canonical_check: tuple = ()  # (tensor, version, data_ptr, result): re-checked after any change

    def is_canonical(self) -> bool:
        """True if filter_copy_s equals canonical_delay_kernels() and is frozen (fast path allowed)."""
        k = self.filter_copy_s
        if k.requires_grad:  # trainable kernels need the general path to receive gradients
            return False
        cached = self._canonical_check
        if cached and cached[0] is k and cached[1] == k._version and cached[2] == k.data_ptr():
            return cached[3]
        # One host sync per change of the kernels (load_state_dict, .to(), in-place edits), not per frame.
        result = torch.equal(k.detach(), canonical_delay_kernels(k.dtype, k.device))
        self._canonical_check = (k, k._version, k.data_ptr(), result)
        return result

    def forward(self, x: Tensor) -> Tensor:
        """All candidates, B×C×h×w -> B×10×C×h×w (official layout; the GSV itself uses weighted_sum)."""
        b, c, h, w = x.shape
        if self.is_canonical():
            xp = F.pad(x, (1, 1, 1, 1))  # zeros enter at the borders
            shifted = [xp[:, :, i:i + h, j:j + w] for i, j in SHIFT_TAPS]
            return torch.stack([x, *shifted, torch.zeros_like(x)], dim=1)
        kernels = self.filter_copy_s.to(x.dtype).view(NUM_DELAY_KERNELS, 1, 3, 3)
        # Each class map is convolved separately with every kernel: same as conv3d with (1,3,3) kernels.
        shifted = F.conv2d(x.reshape(b * c, 1, h, w), kernels, padding=1)  # (B·C)×9×h×w
        return torch.cat([x.unsqueeze(1), shifted.view(b, c, NUM_DELAY_KERNELS, h, w).transpose(1, 2)], dim=1)

    def weighted_sum(self, x: Tensor, weights: Tensor) -> Tensor:
        """Σ_{k<10} weights[:, k] · candidate_k(x) without materialising the candidates.

        x: B×C×h×w; weights: B×10×h×w (one weight per pixel, shared by all C maps) -> B×C×h×w.
        """
        if self.is_canonical():
            return self._weighted_sum_shifts(x, weights)
        return self._weighted_sum_general(x, weights)

    @staticmethod
    def _weighted_sum_shifts(x: Tensor, weights: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        xp = F.pad(x, (1, 1, 1, 1))
        out = x * weights[:, 0:1]
        for m, (i, j) in enumerate(SHIFT_TAPS, start=1):
            out.addcmul_(xp[:, :, i:i + h, j:j + w], weights[:, m:m + 1])
        return out  # candidate 9 is all zero: its weight contributes nothing

    def _weighted_sum_general(self, x: Tensor, weights: Tensor) -> Tensor:
        # Σ_m w_m (K_m ⋆ x) = Σ_taps (Σ_m w_m K_m[tap]) · x[tap-shifted]: fold the kernels into 9 per-pixel
        # tap weights (B×9×h×w), then sum 9 shifted slices — exact, and differentiable in the kernels.
        h, w = x.shape[-2:]
        kernels = self.filter_copy_s.to(weights.dtype).view(NUM_DELAY_KERNELS, 9)  # (kernel, tap)
        tap_weights = torch.einsum("bmhw,mt->bthw", weights[:, 1:1 + NUM_DELAY_KERNELS], kernels)
        xp = F.pad(x, (1, 1, 1, 1))
        out = x * weights[:, 0:1]
        for t in range(9):
            i, j = divmod(t, 3)
            out = out + xp[:, :, i:i + h, j:j + w] * tap_weights[:, t:t + 1]
        return out


def _cat_channels_last(parts: list[Tensor]) -> Tensor:
    """torch.cat along the channels, written straight into the channels-last layout the guide's convs use
    (a plain cat of a channels-last and a 1-channel map gives NCHW, which the conv then converts back).
    ``out=`` has no autograd, so training takes the plain cat."""
    if torch.is_grad_enabled() and any(p.requires_grad for p in parts):
        return torch.cat(parts, dim=1)
    b, _, h, w = parts[0].shape
    out = torch.empty((b, sum(p.shape[1] for p in parts), h, w), dtype=parts[0].dtype, device=parts[0].device,
                      memory_format=torch.channels_last)
    return torch.cat(parts, dim=1, out=out)


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=True), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class Upsample2(nn.Module):
    """×2 bilinear upsampling, align_corners=True (official nn.Upsample; compiled on CPU inference)."""

    def forward(self, x: Tensor) -> Tensor:
        return resize_bilinear(x, (2 * x.shape[-2], 2 * x.shape[-1]))


def _upsample2() -> nn.Module:
    return Upsample2()


class IntraNet(nn.Module):
    """Three 3×3 convs on the current frame: B×3×h×w -> B×num_classes×h×w intra-frame logits."""

    def __init__(self, num_classes: int, width: int) -> None:
        super().__init__()
        self.intra_net = nn.Sequential(*_conv_bn_relu(3, width), *_conv_bn_relu(width, width),
                                       nn.Conv2d(width, num_classes, 3, 1, 1, bias=True))

    def forward(self, image: Tensor) -> Tensor:
        return self.intra_net(image)


class GuidingNet(nn.Module):
    """Residual two-level U-shape giving non-negative per-pixel weights: B×in×h×w -> B×out×h×w.

    The official net needs h, w divisible by 4; other sizes are replicate-padded at the bottom/right to
    the next multiple of 4 and cropped back, so sizes that already fit run exactly the official graph.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        c = GUIDE_WIDTH
        self.guide_conv = nn.Sequential(*_conv_bn_relu(in_channels, c))
        self.guide_conv_feat = nn.Sequential(*_conv_bn_relu(c, 2 * c, 2), *_conv_bn_relu(2 * c, 4 * c, 2))
        self.guide_deconv = nn.Sequential(_upsample2(), *_conv_bn_relu(4 * c, 2 * c),
                                          _upsample2(), *_conv_bn_relu(2 * c, c))
        self.guide_decoder = nn.Sequential(*_conv_bn_relu(c, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % GUIDE_SIZE_MULTIPLE, -w % GUIDE_SIZE_MULTIPLE
        if pad_h or pad_w:
            return self._forward_padded(x, pad_h, pad_w)
        return self._forward_official(x)

    def _forward_padded(self, x: Tensor, pad_h: int, pad_w: int) -> Tensor:
        h, w = x.shape[-2:]
        # Replicate (not zeros) so the padded strip looks like a continuation of the map.
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return self._forward_official(x)[:, :, :h, :w]

    def _forward_official(self, x: Tensor) -> Tensor:
        g = self.guide_conv(x)
        g = g + self.guide_deconv(self.guide_conv_feat(g))
        return self.guide_decoder(g)


class GSV(nn.Module):
    """Guided spatially-varying convolution (official GuidedSpatiallyVaryingConv, any class count).

    forward(warped: B×C×h×w logits, image: B×3×h×w BGR-normalised frame at the same size; may be None
    when intra=False) -> (out B×C×h×w logits, weights B×K×h×w normalised, edge B×1×h×w in {0, 1}),
    K = 11 (skip, 8 shifts, zero, intra) or 10 without the intra branch (docs/deviations.md#model, paper Table 4).
    Parameters for C=19: 210,085 (intra_net 15,763, guide 194,241, frozen ideal_dk 81).
    """

    def __init__(self, num_classes: int = 19, num_filter: int = 32, intra: bool = True) -> None:
        super().__init__()
        if num_classes < 1 or num_filter < 1:
            raise ValueError(f"GSV: num_classes and num_filter must be >= 1, got {num_classes}, {num_filter}")
        self.num_classes, self.intra = num_classes, intra
        self.ideal_dk = IdealDelayKernels()
        if intra:
            self.intra_net = IntraNet(num_classes, num_filter)
        self.num_weights = 1 + NUM_DELAY_KERNELS + int(intra)
        self.guide = GuidingNet(num_classes + 1, self.num_weights)
        laplacian = torch.ones(1, 1, 3, 3)
        laplacian[0, 0, 1, 1] = -8
        self.register_buffer("laplacian", laplacian, persistent=False)  # a constant, not a weight
        for m in self.modules():  # official init_weight_xavier (BN weight 1 and biases: defaults)
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)

    @torch.no_grad()
    def favour_skip(self, skip_bias: float = 3.0, other_bias: float = -1.0) -> None:
        """Optional start (not the official init): shift the guide's last BatchNorm so the ReLU'd weights
        start near (skip ≈ 1, others ≈ 0), i.e. the fusion begins as the warped logits themselves and
        training learns where to use the neighbours and the intra segmentation (``--gsv-init skip``)."""
        bn = self.guide.guide_decoder[1]
        bn.bias.fill_(other_bias)
        bn.bias[0] = skip_bias

    @torch.no_grad()
    def edge_map(self, logits: Tensor) -> Tensor:
        """B×C×h×w logits -> B×1×h×w float {0,1}: Laplacian (zero padding) of the argmax is non-zero."""
        if logits.device.type == "cpu" and logits.dtype == torch.float32 and cpu_kernels.available():
            edge = torch.empty((logits.shape[0], 1, *logits.shape[2:]), dtype=logits.dtype)
            cpu_kernels.follow_torch_threads()
            cpu_kernels.edge(logits.detach().contiguous().numpy(), edge.numpy())  # same map, one pass
            return edge
        # class index as a number (official); max().indices is argmax (first maximum on ties) but several
        # times faster than argmax over the channel dim of an NCHW tensor on CPU
        labels = logits.max(dim=1, keepdim=True).indices.to(logits.dtype)
        response = F.conv2d(labels, self.laplacian.to(logits.dtype), padding=1)
        return (response != 0).to(logits.dtype)

    def _check_inputs(self, warped: Tensor, image: Tensor | None) -> None:
        if warped.dim() != 4 or warped.shape[1] != self.num_classes:
            raise ValueError(f"GSV: warped must be B×{self.num_classes}×h×w logits, got {tuple(warped.shape)}")
        if image is None:
            if self.intra:
                raise ValueError("GSV: image (B×3×h×w) is required when intra=True")
            return
        expected = (warped.shape[0], 3, *warped.shape[2:])
        if tuple(image.shape) != expected:
            raise ValueError(f"GSV: image must be {expected} (same batch and size as warped), "
                             f"got {tuple(image.shape)}")

    def forward(self, warped: Tensor, image: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        self._check_inputs(warped, image)
        edge = self.edge_map(warped)
        intra = self.intra_net(image) if self.intra else None
        weights = self.guide(_cat_channels_last([intra if self.intra else warped, edge]))  # ReLU'd, ≥ 0
        # NCHW from here on (the convs give channels-last): per-pixel weights broadcast over the classes
        # several times faster in NCHW, and the sum is computed in the layout of the warped logits
        weights = (weights / (weights.sum(dim=1, keepdim=True) + NORM_EPS)).contiguous()
        if intra is not None:
            intra = intra.contiguous()
        out = self.ideal_dk.weighted_sum(warped, weights[:, :1 + NUM_DELAY_KERNELS])
        if intra is not None:
            out = out.addcmul_(intra, weights[:, -1:])
        return out, weights, edge
