"""Keyframe nets: the one place that knows how to name, build, feed and read each image-segmentation net
the GSVNet pipeline can run on keyframes.

A keyframe net is named by a spec string, the same in the CLI, configs and run folders, parsed once where it
enters (models/keyframe_spec.py) into a ``KeyframeNetSpec``, which everything here takes:

    swiftnet | bisenet | pidnet_s | pidnet_m | pidnet_l            built-in nets of this repository
    torchvision:<builder>        a builder of torchvision.models.segmentation, random init, no download
    hf:<local folder or hub id>  transformers.AutoModelForSemanticSegmentation.from_pretrained
    module:<dotted.path>:<factory>  any importable factory, called as factory(num_classes=N)

Conventions (stated once, here):
- Frames enter as float RGB on the 0–255 scale, B×3×H×W. ``Normalisation.apply`` turns them into the
  net's input: divide by ``input_range`` (255 → statistics on the 0–1 scale; 1 → on the 0–255 scale),
  subtract the mean, divide by the std, per RGB channel.
- Built-ins use their own statistics (SwiftNet on 0–255, BiSeNet and PIDNet ImageNet on 0–1); every
  other kind gets ImageNet statistics on 0–1.
- The flow net and GSV keep the statistics they were trained with: SwiftNet's or BiSeNet's own for
  those two (parity with the official weights), ImageNet on 0–1 for every other keyframe net.
- ``read_logits`` returns the raw main logits B×C×h×w (no softmax) at the net's own stride; which part
  of a multi-output result is "main" is decided by the kind, never by position alone.
- Weights: built-in nets load their official formats through models/checkpoints.py (not here); an
  ``hf:`` folder carries its own; ``torchvision:`` and ``module:`` nets take a state_dict file here.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from models.bisenet import IMAGENET_MEAN, IMAGENET_STD, BiSeNet
from models.state_dicts import load_strict, segnet_state_dict
from models.keyframe_spec import BUILTIN_NAMES, KeyframeNetSpec
from models.swiftnet import SWIFTNET_MEAN, SWIFTNET_STD, SwiftNet

HF_OUTPUT_STRIDES = {"segformer": 4}  # model_type -> stride of its logits; other types: unknown


@dataclass(frozen=True)
class Normalisation:
    """Per-channel RGB statistics of a net's input, stated on the scale frame / ``input_range``."""
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_range: float  # 255: the net sees RGB/255 normalised; 1: RGB 0–255 normalised

    def as_divisor(self) -> float:
        """The number a 0–255 frame is divided by before the statistics apply."""
        return float(self.input_range)

    def apply(self, frame_rgb_0_255: Tensor) -> Tensor:
        """B×3×H×W RGB 0–255 (float or uint8) -> the normalised B×3×H×W float input."""
        x = frame_rgb_0_255 if frame_rgb_0_255.is_floating_point() else frame_rgb_0_255.float()
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x / self.input_range - mean) / std


IMAGENET = Normalisation(IMAGENET_MEAN, IMAGENET_STD, 255.0)
SWIFTNET = Normalisation(SWIFTNET_MEAN, SWIFTNET_STD, 1.0)


@dataclass(frozen=True)
class BuiltinNet:
    """What the pipeline needs to know about one built-in net."""
    build: Callable[[int, bool], nn.Module]  # (num_classes, training_form) -> random-init net
    normalisation: Normalisation
    main_index: int | None  # where the main logits sit in a list/tuple result; None: tensor only
    output_stride: int


def _build_swiftnet(num_classes: int, training_form: bool) -> nn.Module:
    return SwiftNet(num_classes)  # one output in every mode


def _build_bisenet(num_classes: int, training_form: bool) -> nn.Module:
    return BiSeNet(num_classes)  # returns (main, aux16, aux8) in train() mode whatever training_form says


def _build_pidnet(variant: str, num_classes: int, training_form: bool) -> nn.Module:
    from models.pidnet import build_pidnet  # lazy: only PIDNet users pay for (or need) the module
    return build_pidnet(variant, num_classes, augment=training_form)


BUILTINS: dict[str, BuiltinNet] = {
    "swiftnet": BuiltinNet(_build_swiftnet, SWIFTNET, None, 4),  # logits at ceil(H/4) (models/swiftnet.py)
    "bisenet": BuiltinNet(_build_bisenet, IMAGENET, 0, 8),
    "pidnet_s": BuiltinNet(partial(_build_pidnet, "s"), IMAGENET, 1, 8),  # augment: [p_aux, main, d]
    "pidnet_m": BuiltinNet(partial(_build_pidnet, "m"), IMAGENET, 1, 8),
    "pidnet_l": BuiltinNet(partial(_build_pidnet, "l"), IMAGENET, 1, 8),
}
assert tuple(BUILTINS) == BUILTIN_NAMES


# --- what a spec implies ------------------------------------------------------------------------
def default_normalisation(spec: KeyframeNetSpec) -> Normalisation:
    """Input statistics of the keyframe net: a built-in's own, ImageNet on RGB 0–1 for every other kind."""
    parsed = spec
    return BUILTINS[parsed.target].normalisation if parsed.kind == "builtin" else IMAGENET


def propagation_normalisation(spec: KeyframeNetSpec) -> Normalisation:
    """Statistics of the flow-net and GSV inputs: SwiftNet's or BiSeNet's own (the official weights were
    trained so), ImageNet on RGB 0–1 for every other keyframe net."""
    parsed = spec
    if parsed.kind == "builtin" and parsed.target in ("swiftnet", "bisenet"):
        return BUILTINS[parsed.target].normalisation
    return IMAGENET


def output_stride(spec: KeyframeNetSpec) -> int | None:
    """Input size / logits size: built-ins their own, torchvision 1 (logits at input size), a local hf
    folder by its model_type (SegFormer 4), None where unknown (module kind, hub ids, other hf types)."""
    parsed = spec
    if parsed.kind == "builtin":
        return BUILTINS[parsed.target].output_stride
    if parsed.kind == "torchvision":
        return 1
    config = Path(parsed.target).expanduser() / "config.json"
    if parsed.kind == "hf" and config.is_file():
        return HF_OUTPUT_STRIDES.get(json.loads(config.read_text()).get("model_type"))
    return None


# --- building ------------------------------------------------------------------------------------
def _build_builtin(parsed: KeyframeNetSpec, num_classes: int, training_form: bool) -> nn.Module:
    return BUILTINS[parsed.target].build(num_classes, training_form)


def _build_torchvision(parsed: KeyframeNetSpec, num_classes: int, training_form: bool) -> nn.Module:
    """Random init, no aux head; weights=None and weights_backbone=None so nothing is ever downloaded."""
    from torchvision.models import get_model_builder, list_models, segmentation
    available = list_models(module=segmentation)
    if parsed.target not in available:
        raise ValueError(f"keyframe net spec {parsed.spec!r}: torchvision.models.segmentation has no builder "
                         f"{parsed.target!r}; available: {', '.join(available)}")
    return get_model_builder(parsed.target)(weights=None, weights_backbone=None, num_classes=num_classes)


def _looks_like_path(target: str) -> bool:
    return target.startswith(("/", ".", "~")) or "\\" in target or target.count("/") > 1


def _build_hf(parsed: KeyframeNetSpec, num_classes: int, training_form: bool) -> nn.Module:
    """A complete *ForSemanticSegmentation checkpoint; a missing head is an error, not a random head."""
    folder = Path(parsed.target).expanduser()
    name = f"keyframe net spec {parsed.spec!r}"
    if not folder.is_dir() and _looks_like_path(parsed.target):
        raise ValueError(f"{name}: no such folder {str(folder)!r}")
    from transformers import AutoModelForSemanticSegmentation
    source = str(folder) if folder.is_dir() else parsed.target
    try:
        model, info = AutoModelForSemanticSegmentation.from_pretrained(source, output_loading_info=True)
    except (OSError, ValueError) as err:
        raise ValueError(f"{name}: cannot load a semantic-segmentation model from {source!r} ({err})") from err
    missing = sorted(info["missing_keys"])
    if missing:
        saved_as = getattr(model.config, "architectures", None) or ["unknown class"]
        raise ValueError(f"{name}: the checkpoint ({', '.join(saved_as)}) has no semantic-segmentation head; "
                         f"{len(missing)} weights would be random, e.g. {', '.join(missing[:3])}. Expected a "
                         "model saved from a *ForSemanticSegmentation class, e.g. SegformerForSemanticSegmentation")
    if model.config.num_labels != num_classes:
        raise ValueError(f"{name}: the model predicts {model.config.num_labels} classes (config.num_labels) "
                         f"but num_classes is {num_classes}")
    return model


def _build_module(parsed: KeyframeNetSpec, num_classes: int, training_form: bool) -> nn.Module:
    """factory(num_classes=N) and nothing else; the result must be an nn.Module."""
    path, _, factory_name = parsed.target.partition(":")
    name = f"keyframe net spec {parsed.spec!r}"
    try:
        module = importlib.import_module(path)
    except Exception as err:  # user code: report any import-time failure with the spec
        raise ValueError(f"{name}: cannot import {path!r}: {type(err).__name__}: {err}") from err
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"{name}: module {path!r} has no callable {factory_name!r}")
    net = factory(num_classes=num_classes)
    if not isinstance(net, nn.Module):
        raise ValueError(f"{name}: {path}.{factory_name}(num_classes={num_classes}) returned "
                         f"{type(net).__module__}.{type(net).__qualname__}, expected a torch.nn.Module")
    return net


_BUILDERS = {"builtin": _build_builtin, "torchvision": _build_torchvision, "hf": _build_hf,
             "module": _build_module}


def build_keyframe_net(spec: KeyframeNetSpec, num_classes: int, *, weights: str | None = None,
                       training_form: bool = False) -> nn.Module:
    """Build the keyframe net a spec names, predicting ``num_classes`` classes.

    weights: a state_dict file (raw, or under 'state_dict' / 'model' / 'segnet_state_dict'), loaded
    strictly; only for torchvision: and module: nets. Built-in weights come in official formats and are
    loaded by models/checkpoints.py after building; an hf: folder holds its own weights.
    training_form: the form that also returns auxiliary outputs (PIDNet augment=True); BiSeNet returns
    them in train() mode regardless, the other kinds ignore it.
    """
    parsed = spec
    if weights is not None and parsed.kind in ("builtin", "hf"):
        where = ("load official weights with models/checkpoints.py after building" if parsed.kind == "builtin"
                 else "the folder or hub id carries its own weights")
        raise ValueError(f"keyframe net spec {parsed.spec!r}: a weights file is not taken here ({where})")
    net = _BUILDERS[parsed.kind](parsed, num_classes, training_form)
    if weights is not None:
        load_strict(net, segnet_state_dict(weights), f"keyframe net {parsed.spec}", str(weights))
    return net


# --- reading outputs -----------------------------------------------------------------------------
def _dict_out(output: Any) -> Tensor | None:
    """A torchvision-style dict's 'out' entry (its 'aux' entry, if any, is ignored)."""
    return output["out"] if isinstance(output, Mapping) and isinstance(output.get("out"), Tensor) else None


def _dot_logits(output: Any) -> Tensor | None:
    """An HF output's .logits (HF outputs are dicts too, keyed 'logits')."""
    logits = getattr(output, "logits", None)
    return logits if isinstance(logits, Tensor) else None


def _main_element(name: str, output: Any) -> Tensor | None:
    index = BUILTINS[name].main_index
    if index is None or not isinstance(output, (list, tuple)) or len(output) <= index:
        return None
    return output[index] if isinstance(output[index], Tensor) else None


def read_logits(spec: KeyframeNetSpec, output: Any) -> Tensor:
    """The main logits of a keyframe net's forward result, chosen by the spec's kind.

    A tensor is returned as it is. torchvision: output['out']; hf: output.logits; built-ins with several
    outputs: their main element (BiSeNet index 0, PIDNet index 1); module: a tensor, a dict with 'out'
    or an object with .logits (a list or tuple is ambiguous and refused). TypeError otherwise.
    """
    parsed = spec
    if isinstance(output, Tensor):
        return output
    if parsed.kind == "builtin":
        found = _main_element(parsed.target, output)
    elif parsed.kind == "torchvision":
        found = _dict_out(output)
    elif parsed.kind == "hf":
        found = _dot_logits(output)
    else:
        found = _dot_logits(output)
        found = _dict_out(output) if found is None else found
    if found is None:
        raise TypeError(f"keyframe net spec {parsed.spec!r}: cannot read logits from a "
                        f"{type(output).__module__}.{type(output).__qualname__} output")
    return found


def check_logits(logits: Tensor, num_classes: int, spec: KeyframeNetSpec) -> Tensor:
    """``logits`` if it is a float B×C×h×w tensor with C == num_classes, else ValueError naming the spec."""
    name = spec.spec
    if not isinstance(logits, Tensor) or logits.dim() != 4 or not logits.is_floating_point():
        what = (f"{logits.dtype} tensor of shape {tuple(logits.shape)}" if isinstance(logits, Tensor)
                else type(logits).__name__)
        raise ValueError(f"keyframe net spec {name!r}: expected float logits B×C×h×w, got a {what}")
    if logits.shape[1] != num_classes:
        raise ValueError(f"keyframe net spec {name!r}: logits have {logits.shape[1]} channels, "
                         f"expected num_classes={num_classes}")
    return logits
