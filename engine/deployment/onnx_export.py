"""ONNX export of a GSVNet: three graphs, one per stage, and ``gsvnet.json`` describing them.

    lowres     frame uint8 1×H×W×3 RGB -> lowres float32 1×3×(H//8)×(W//8): the normalised BGR image
               the flow net and GSV see (GSVNet.lowres_bgr)
    keyframe   frame uint8 1×H×W×3 RGB -> logits float32 1×C×(H//8)×(W//8) (GSVNet.keyframe at the
               export's key scale: normalisation and both resizes are inside the graph)
    propagate  prev_lowres, cur_lowres 1×3×h×w, prev_logits 1×C×h×w -> logits 1×C×h×w: flow net, warp,
               GSV (GSVNet.propagate, fusion "gsv")

The state between frames (previous logits and 1/8 image) stays in host code (engine/deployment/onnx_runtime.py),
as in VideoPredictor. Each graph is a trace of the model's own method on its inference form (BatchNorm
folded, eval) with the compiled CPU kernels switched off (``cpu_kernels.disabled``), so the graphs
compute what the PyTorch path computes; no part is written a second time for export. The warp is the
one operation with a graph form of its own: while exporting, ``models.warp.warp`` samples with row
gathers (``warp_gathered``, the same bilinear samples as grid_sample, tested against it), because ONNX
Runtime's GridSample kernel took ~4.5 ms of a ~24 ms propagate graph at 1024×2048 on 2 cores.

Dynamic or static: with two or more frame sizes a part is first exported with dynamic H and W and run
under ONNX Runtime at every size against the PyTorch output. An exporter can report a dynamic export
yet fix a size inside the graph, so only running every size decides (SwiftNet's pyramid pooling grid,
``round`` of the aspect ratio, cannot be dynamic at all). A part that fails is written as one static
graph per size (``keyframe_1024x2048.onnx``); a single size is exported static. gsvnet.json lists, per
part, the file for every accepted size, and the runtime refuses other sizes.
"""
from __future__ import annotations

import contextlib
import io
import platform
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from engine.deployment.onnx_runtime import (DTYPES, FORMAT, INPUTS, META_NAME, OUTPUTS, PARTS, SHAPES, first_line,
                                            size_key)
from engine.runs import REPO
from models import cpu_kernels
from models.bn_fold import fold_batchnorm
from models.gsvnet import GSVNet, lowres_size
from utils.logging import git_commit, write_json

OPSET = 18  # gsvnet-onnx/1 asks for >= 16
DEFAULT_SIZE = (1024, 2048)  # --export-size when none is given
# Export check, graph vs PyTorch: max |difference| <= CHECK_TOLERANCE · max(1, max |PyTorch output|). The
# project's bar against the official code: float32 rounding of a deep random-init net reaches ~1e-4 of
# the largest logit (PIDNet-S: eager float32 is itself 7e-5 off float64), while a wrong resize
# convention or a lost constant is off by 1e-2 or more (or NaN).
CHECK_TOLERANCE = 1e-3


class GraphCheckError(ValueError):
    """An exported graph fails to run at a size, or its output differs from the PyTorch output."""

    def __init__(self, message: str, size: tuple[int, int]):
        super().__init__(message)
        self.size = size


# --- sizes ---------------------------------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int]:
    """'1024x2048' -> (1024, 2048); ValueError naming the text. Both sides >= 16 (a 1/8 grid of >= 2)."""
    parts = str(text).lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--export-size {text!r}: expected HxW, e.g. 1024x2048")
    height, width = (int(p) for p in parts)
    if height < 16 or width < 16:
        raise ValueError(f"--export-size {text!r}: height and width must be >= 16 (1/8 grid of at least 2×2)")
    return height, width


# --- the traced forms ----------------------------------------------------------------------------
class LowresGraph(nn.Module):
    """frame uint8 1×H×W×3 RGB -> GSVNet.lowres_bgr of it."""

    def __init__(self, model: GSVNet):
        super().__init__()
        self.model = model

    def forward(self, frame: Tensor) -> Tensor:
        return self.model.lowres_bgr(frame.permute(0, 3, 1, 2))  # NHWC frame -> NCHW view, as VideoPredictor


class KeyframeGraph(nn.Module):
    """frame uint8 1×H×W×3 RGB -> GSVNet.keyframe(frame as float, key_scale)."""

    def __init__(self, model: GSVNet, key_scale: float):
        super().__init__()
        self.model, self.key_scale = model, float(key_scale)

    def forward(self, frame: Tensor) -> Tensor:
        return self.model.keyframe(frame.permute(0, 3, 1, 2).float(), self.key_scale)


class PropagateGraph(nn.Module):
    """(prev_lowres, cur_lowres, prev_logits) -> GSVNet.propagate(prev_logits, prev_lowres, cur_lowres, "gsv")."""

    def __init__(self, model: GSVNet):
        super().__init__()
        self.model = model

    def forward(self, prev_lowres: Tensor, cur_lowres: Tensor, prev_logits: Tensor) -> Tensor:
        return self.model.propagate(prev_logits, prev_lowres, cur_lowres, "gsv")


def inference_copy(model: GSVNet) -> GSVNet:
    """The form VideoPredictor runs (fold_bn=True): an eval copy on the CPU with BatchNorm folded."""
    folded, _ = fold_batchnorm(model)
    folded = folded.cpu().eval()
    # IdealDelayKernels.is_canonical() compares the kernel values (torch.equal), which the exporter's
    # fake tensors cannot; the kernels are frozen, so the answer from the real values holds for the trace.
    delay = folded.gsv.ideal_dk
    canonical = delay.is_canonical()
    delay.is_canonical = lambda: canonical
    return folded


def graph_modules(model: GSVNet, key_scale: float) -> dict[str, nn.Module]:
    return {"lowres": LowresGraph(model).eval(), "keyframe": KeyframeGraph(model, key_scale).eval(),
            "propagate": PropagateGraph(model).eval()}


def reference_cases(graphs: dict[str, nn.Module], size: tuple[int, int], seed: int = 0
                    ) -> dict[str, tuple[tuple[Tensor, ...], Tensor]]:
    """Per part: (inputs, PyTorch output) at one frame size, from two random frames."""
    gen = torch.Generator().manual_seed(seed)
    first, second = (torch.randint(0, 256, (1, *size, 3), dtype=torch.uint8, generator=gen) for _ in range(2))
    with cpu_kernels.disabled(), torch.no_grad():
        prev_lowres, cur_lowres = graphs["lowres"](first), graphs["lowres"](second)
        prev_logits = graphs["keyframe"](first)
        logits = graphs["propagate"](prev_lowres, cur_lowres, prev_logits)
    return {"lowres": ((second,), cur_lowres), "keyframe": ((first,), prev_logits),
            "propagate": ((prev_lowres, cur_lowres, prev_logits), logits)}


# --- writing and checking one graph --------------------------------------------------------------
def _dynamic_shapes(part: str) -> dict:
    auto = torch.export.Dim.AUTO
    if part == "propagate":
        return {name: {2: auto, 3: auto} for name in INPUTS[part]}
    return {"frame": {1: auto, 2: auto}}


def write_graph(module: nn.Module, part: str, inputs: tuple[Tensor, ...], path: Path, dynamic: bool,
                opset: int = OPSET) -> Path:
    """Trace ``module`` on ``inputs`` (dynamo exporter), save one self-contained .onnx file, check it.

    Only constant folding from onnxscript's optimizer (optimize=False, then fold_constants): its rewrite
    rules (onnxscript 0.7.2) turn x + c into x for |c| <= 1e-8, which drops the GSV's 1e-9 in
    weights / (sum + 1e-9) and makes all-zero guide outputs NaN (0 / 0). ONNX Runtime's own graph
    optimisations run when a session loads the graph.
    """
    import onnx
    from onnxscript import optimizer
    inputs = tuple(t.clone() for t in inputs)  # a failed dynamic export leaves marks on its example tensors
    # redirect_stdout: the exporter prints its progress; its errors carry what matters
    with cpu_kernels.disabled(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(module, inputs, dynamo=True, opset_version=opset, verbose=False,
                                    optimize=False, input_names=list(INPUTS[part]),
                                    output_names=[OUTPUTS[part]],
                                    dynamic_shapes=_dynamic_shapes(part) if dynamic else None)
    optimizer.fold_constants(program.model)
    optimizer.remove_unused_nodes(program.model)
    proto = program.model_proto
    sink_transposes(proto)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, str(path))
    return path


def _attr(node, name: str, default=None):
    import onnx
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _tensor_ranks(model) -> dict[str, int]:
    import onnx
    inferred = onnx.shape_inference.infer_shapes(model).graph
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in (*inferred.value_info, *inferred.input)}
    ranks.update({t.name: len(t.dims) for t in model.graph.initializer})
    ranks.update({n.output[0]: len(n.attribute[0].t.dims) for n in model.graph.node
                  if n.op_type == "Constant" and n.attribute[0].name == "value"})
    return ranks


def sink_transposes(model) -> int:
    """Gather(Transpose(x, perm), axis=a) -> Transpose(Gather(x, axis=perm[a]), perm), repeated: the same
    values, but a large input is gathered before anything is transposed (the lowres graph: the NHWC
    frame's permute would otherwise copy all of it for the few rows and columns it samples). Only
    Gathers with 1-D indices (they keep the rank). Returns the number of Gathers moved."""
    import onnx
    graph, ranks, moved = model.graph, _tensor_ranks(model), 0
    outputs = {o.name for o in graph.output}

    def gathers_of(transpose) -> list:
        users = [n for n in graph.node if transpose.output[0] in n.input]
        movable = transpose.output[0] not in outputs and all(
            u.op_type == "Gather" and u.input[0] == transpose.output[0] and ranks.get(u.input[1]) == 1 for u in users)
        return users if movable else []

    while pending := [(t, g) for t in graph.node if t.op_type == "Transpose" and (g := gathers_of(t))]:
        transpose, gathers = pending[0]
        perm = list(_attr(transpose, "perm"))
        for gather in gathers:
            axis, out, at = _attr(gather, "axis", 0) % len(perm), gather.output[0], list(graph.node).index(gather)
            graph.node.remove(gather)
            graph.node.insert(at, onnx.helper.make_node("Transpose", [out + "_untransposed"], [out], perm=perm))
            graph.node.insert(at, onnx.helper.make_node("Gather", [transpose.input[0], gather.input[1]],
                                                        [out + "_untransposed"], axis=perm[axis]))
            moved += 1
        graph.node.remove(transpose)
    return moved


def check_graph(path: Path, part: str, cases: dict[tuple[int, int], tuple[tuple[Tensor, ...], Tensor]]
                ) -> dict[str, float]:
    """Run the graph under ONNX Runtime (CPU) at every size of ``cases``; max |difference| per size.

    Raises GraphCheckError naming the file and size when a run fails, the output shape differs (a size
    fixed inside a graph exported as dynamic) or a value is off by more than the tolerance.
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures are reported below, with the size
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    diffs = {}
    for size, (inputs, expected) in cases.items():
        feed = {name: t.numpy() for name, t in zip(INPUTS[part], inputs)}
        try:
            out = session.run(None, feed)[0]
        except Exception as err:  # ORT raises its own exception types, one per status code
            raise GraphCheckError(f"{path.name} at {size_key(size)}: ONNX Runtime cannot run it "
                                  f"({first_line(err)})", size) from err
        if tuple(out.shape) != tuple(expected.shape):
            raise GraphCheckError(f"{path.name} at {size_key(size)}: output {tuple(out.shape)}, expected "
                                  f"{tuple(expected.shape)} (a size fixed inside the graph)", size)
        diff = float(np.abs(out - expected.numpy()).max())
        limit = CHECK_TOLERANCE * max(1.0, float(expected.abs().max()))
        if not diff <= limit:
            raise GraphCheckError(f"{path.name} at {size_key(size)}: max |ONNX - PyTorch| = {diff:.3g} "
                                  f"exceeds {limit:.3g}", size)
        diffs[size_key(size)] = diff
    return diffs


def _group(part: str, sizes: list[tuple[int, int]]) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """Frame sizes that share one static graph: propagate depends only on the 1/8 grid."""
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for size in sizes:
        key = lowres_size(*size) if part == "propagate" else size
        groups.setdefault(key, []).append(size)
    return {members[0]: members for members in groups.values()}


def _dynamic_graph(part: str, module: nn.Module, cases: dict, path: Path, opset: int,
                   log: Callable[[str], None]) -> dict | None:
    """A dynamic graph checked at every size, or None. Traced at the first size; if it fails at another
    size, traced once more at that one (a size that takes a branch the first did not, such as the GSV
    guide's padding of a 1/8 grid that is not a multiple of 4, can give a graph that holds for all)."""
    examples = [next(iter(cases))]
    for example in examples:
        try:
            write_graph(module, part, cases[example][0], path, dynamic=True, opset=opset)
            return check_graph(path, part, cases)
        except GraphCheckError as err:
            log(f"export: {part}: the dynamic graph traced at {size_key(example)} fails ({first_line(err)})")
            if len(examples) == 1 and err.size != example:
                examples.append(err.size)
        except torch.onnx.errors.OnnxExporterError as err:
            log(f"export: {part}: no dynamic graph ({first_line(err)})")
            break
    path.unlink(missing_ok=True)
    return None


def export_part(part: str, module: nn.Module, cases: dict, folder: Path, opset: int = OPSET,
                log: Callable[[str], None] = print) -> dict:
    """Write one part: a dynamic graph if one holds at every size, else one static graph per size.

    cases: frame size -> (inputs, PyTorch output). Returns the part's gsvnet.json entry.
    """
    sizes = list(cases)
    if len(_group(part, sizes)) > 1:
        path = folder / f"{part}.onnx"
        diffs = _dynamic_graph(part, module, cases, path, opset, log)
        if diffs is not None:
            return {"dynamic": True, "files": {size_key(s): path.name for s in sizes}, "max_abs_diff": diffs}
        log(f"export: {part}: one static graph per size")
    files, diffs = {}, {}
    for first, members in _group(part, sizes).items():
        path = write_graph(module, part, cases[first][0], folder / f"{part}_{size_key(first)}.onnx",
                           dynamic=False, opset=opset)
        diffs.update(check_graph(path, part, {s: cases[s] for s in members}))
        files.update({size_key(s): path.name for s in members})
    return {"dynamic": False, "files": files, "max_abs_diff": diffs}


# --- the whole export ----------------------------------------------------------------------------
def _versions() -> dict:
    import onnx
    import onnxscript
    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__,
            "python": platform.python_version()}


def export_onnx(model: GSVNet, folder: str | Path, sizes: Sequence[tuple[int, int]], *, key_scale: float = 0.75,
                key_interval: int = 3, class_names: Sequence[str] | None = None,
                palette: Sequence[Sequence[int]] | None = None, opset: int = OPSET,
                log: Callable[[str], None] = print) -> dict:
    """Export ``model`` into ``folder`` (created): the graphs of PARTS + gsvnet.json. Returns the JSON.

    sizes: the frame sizes (H, W) the graphs must accept, each checked by running it. class_names and
    palette (one RGB triple per class) are stored for the runtime's colour maps.
    """
    sizes = list(dict.fromkeys((int(h), int(w)) for h, w in sizes))
    if not sizes:
        raise ValueError("export_onnx: no frame size given")
    if opset < 16:
        raise ValueError(f"export_onnx: opset {opset} is below 16, the lowest gsvnet-onnx/1 supports")
    for name, values in (("class_names", class_names), ("palette", palette)):
        if values is not None and len(values) != model.num_classes:
            raise ValueError(f"export_onnx: {len(values)} {name} for a model of {model.num_classes} classes")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_NAME).unlink(missing_ok=True)  # written last: a folder without it is not an export
    graphs = graph_modules(inference_copy(model), key_scale)
    cases = {size: reference_cases(graphs, size) for size in sizes}
    entries = {}
    for part in PARTS:
        log(f"export: {part} at {', '.join(size_key(s) for s in sizes)}")
        entry = export_part(part, graphs[part], {s: cases[s][part] for s in sizes}, folder, opset, log)
        entries[part] = {**entry, "inputs": {n: {"shape": SHAPES[n], "dtype": DTYPES.get(n, "float32")}
                                             for n in INPUTS[part]},
                         "outputs": {OUTPUTS[part]: {"shape": SHAPES[OUTPUTS[part]], "dtype": "float32"}}}
    meta = {"format": FORMAT, "git_commit": git_commit(str(REPO)), "keyframe_net": model.segnet_name,
            "flow": model.flow_name, "fusion": "gsv", "num_classes": model.num_classes,
            "key_interval": int(key_interval), "key_scale": float(key_scale),
            "class_names": list(class_names) if class_names is not None else None,
            "palette": [list(map(int, c)) for c in palette] if palette is not None else None,
            "opset": opset, "frame_sizes": [list(s) for s in sizes], "graphs": entries,
            "check_tolerance": CHECK_TOLERANCE, "exporter": _versions()}
    write_json(folder / META_NAME, meta)
    return meta
