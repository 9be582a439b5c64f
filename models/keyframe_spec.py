"""The keyframe-net spec: the string that names a keyframe net (``--segnet``, configs, checkpoints, run folders),
parsed once where it enters into a ``KeyframeNetSpec`` that everything else takes. Torch-free (the CLI imports it).

    swiftnet | bisenet | pidnet_s | pidnet_m | pidnet_l            built-in nets of this repository
    torchvision:<builder>        a builder of torchvision.models.segmentation
    hf:<local folder or hub id>  a transformers semantic-segmentation model
    module:<dotted.path>:<factory>  any importable factory, called as factory(num_classes=N)

``parse_spec`` is called only where a string enters: the CLI and the Config built from it, checkpoint and export
files, the public Python API (``VideoPredictor.from_checkpoints``) and the drivers' own command lines
(tests/test_spec_parsing.py lists them).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

KINDS = ("builtin", "torchvision", "hf", "module")
BUILTIN_NAMES = ("swiftnet", "bisenet", "pidnet_s", "pidnet_m", "pidnet_l")
SPEC_FORMS = ("swiftnet | bisenet | pidnet_s | pidnet_m | pidnet_l | torchvision:<builder> | "
              "hf:<local folder or hub id> | module:<dotted.path>:<factory>")


@dataclass(frozen=True)
class KeyframeNetSpec:
    """A parsed spec: ``spec`` the canonical string, ``kind`` one of KINDS, ``target`` what follows the
    kind prefix (the built-in name itself for built-ins). ``str()`` gives the canonical string."""
    spec: str
    kind: str
    target: str

    def __str__(self) -> str:
        return self.spec

    @property
    def is_pidnet(self) -> bool:
        return self.kind == "builtin" and self.target.startswith("pidnet")


def _bad_spec(spec: Any, reason: str) -> ValueError:
    return ValueError(f"keyframe net spec {spec!r}: {reason}. Accepted: {SPEC_FORMS}")


def _is_dotted_path(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def parse_spec(spec: str) -> KeyframeNetSpec:
    """Parse and validate a spec string (surrounding whitespace ignored); ValueError naming it if malformed."""
    if not isinstance(spec, str):
        raise _bad_spec(spec, f"expected a string, got {type(spec).__name__}")
    text = spec.strip()
    if text in BUILTIN_NAMES:
        return KeyframeNetSpec(text, "builtin", text)
    prefix, colon, target = text.partition(":")
    target = target.strip()
    if not colon or prefix not in KINDS[1:]:
        raise _bad_spec(spec, "unknown keyframe net name")
    if prefix == "torchvision" and not target.isidentifier():
        raise _bad_spec(spec, "torchvision: needs a builder name, e.g. torchvision:lraspp_mobilenet_v3_large")
    if prefix == "hf" and not target:
        raise _bad_spec(spec, "hf: needs a folder written by save_pretrained or a hub id")
    if prefix == "module":
        path, colon, factory = target.partition(":")
        if not (colon and _is_dotted_path(path) and factory.isidentifier()):
            raise _bad_spec(spec, "module: needs <dotted.path>:<factory>, e.g. module:my_pkg.nets:make_net")
    return KeyframeNetSpec(f"{prefix}:{target}", prefix, target)


DEFAULT_SPEC = parse_spec("swiftnet")  # where neither the caller nor a file names one


def hf_folder_spec(folder: str) -> KeyframeNetSpec:
    """The hf: spec of a save_pretrained folder (a weights folder given for an hf: net)."""
    return parse_spec(f"hf:{folder}")


def spec_dirname(spec: KeyframeNetSpec) -> str:
    """A filesystem-safe, stable folder name: built-ins as they are, "<kind>-<target>" when the target is
    already safe (torchvision:fcn_resnet50 -> torchvision-fcn_resnet50); otherwise odd characters become
    '_', only the last 60 are kept, and a hash of the whole spec keeps distinct specs distinct."""
    if spec.kind == "builtin":
        return spec.target
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", spec.target).strip("._-")[-60:].lstrip("._-")
    if safe == spec.target:
        return f"{spec.kind}-{safe}"
    digest = hashlib.sha1(spec.spec.encode("utf-8")).hexdigest()[:8]
    return f"{spec.kind}-{safe}-{digest}" if safe else f"{spec.kind}-{digest}"
