"""Which heavy modules each mode loads, seen from fresh processes: importing a mode, or running main.py on a
tiny real video, must not load torchvision, ONNX Runtime, transformers, matplotlib or TensorBoard (seconds of
start-up each) where the mode does not use them; the modes that do use one load it (so the probe sees them)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.checkpoints import gsvnet_checkpoint
from models.gsvnet import GSVNet
from models.keyframe_spec import parse_spec
from utils.checkpoint import save_atomic

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torchvision", "onnxruntime", "onnx", "onnxscript", "transformers", "matplotlib", "tensorboard",
         "torch.utils.tensorboard", "sympy", "torch._dynamo", "skvideo", "numba", "scipy")
# torchvision pulls torch._dynamo and sympy in through torchvision.ops; numba (and scipy, which numba loads
# with its first kernel) only the CPU kernels need.
NEVER_FOR_SWIFTNET = {"torchvision", "onnxruntime", "onnx", "onnxscript", "transformers", "matplotlib", "tensorboard",
                      "torch.utils.tensorboard", "sympy", "torch._dynamo", "skvideo"}
MODES = ("modes.inference", "modes.evaluate", "modes.train", "modes.train_segnet", "modes.benchmark",
         "modes.benchmark_video", "modes.export", "engine.inference")
PROBE = """import json, sys
{body}
print("HEAVY=" + json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""
RUN_MAIN = "import main\nrc = main.main(sys.argv[1:])\nprint('RC=%d' % rc)"


def heavy_loaded(body: str, *args: str) -> tuple[set[str], str]:
    """(the HEAVY modules a fresh interpreter has loaded after running ``body`` with ``args``, its output)."""
    proc = subprocess.run([sys.executable, "-c", PROBE.format(body=body, heavy=HEAVY), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    line = next(line for line in proc.stdout.splitlines() if line.startswith("HEAVY="))
    return set(json.loads(line.removeprefix("HEAVY="))), out


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> dict[str, Path]:
    """A 4-frame 64×96 mp4 and the SwiftNet + GSVNet weight files of a random model (official formats)."""
    root = tmp_path_factory.mktemp("imports")
    writer = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 64))
    rng = np.random.default_rng(0)
    for _ in range(4):
        writer.write(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    writer.release()
    torch.manual_seed(0)
    model = GSVNet.build(parse_spec("swiftnet"), "light", 19)
    torch.save(model.segnet.state_dict(), root / "swnet.pt")
    save_atomic(gsvnet_checkpoint(model.gsv, model.flow_net, epoch=1), root / "gsvnet.pth.tar")
    return {"root": root, "video": root / "clip.mp4", "segnet": root / "swnet.pt", "ckpt": root / "gsvnet.pth.tar"}


def infer_args(clip: dict, out: str, *extra: str) -> list[str]:
    return ["--inference", "1", "--input", str(clip["video"]), "--output", str(clip["root"] / out),
            "--log-folder", str(clip["root"] / "logs"), "--device", "cpu", *extra]


def test_importing_the_modes_loads_no_heavy_module():
    # One process for all: sys.modules only grows, so an empty union means each mode alone loads none.
    loaded, _ = heavy_loaded("\n".join(f"import {module}" for module in MODES))
    assert loaded == set()   # numba too: imported by the first kernel call, not by models/cpu_kernels.py


def test_swiftnet_inference_on_cpu_loads_only_numba(clip):
    loaded, out = heavy_loaded(RUN_MAIN, *infer_args(clip, "swiftnet", "--segnet-weights", str(clip["segnet"]),
                                                    "--resume", str(clip["ckpt"])))
    assert "RC=0" in out and "wrote 4 frames" in out
    assert "numba" in loaded                  # the CPU kernels ran: the probe sees what a run imports
    assert loaded & NEVER_FOR_SWIFTNET == set()


def test_torchvision_spec_loads_torchvision(clip):
    import torchvision
    spec = "torchvision:lraspp_mobilenet_v3_large"
    torch.manual_seed(0)
    net = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                    num_classes=19)
    torch.save(net.state_dict(), clip["root"] / "lraspp.pt")
    loaded, out = heavy_loaded(RUN_MAIN, *infer_args(clip, "tv", "--segnet", spec, "--segnet-weights",
                                                    str(clip["root"] / "lraspp.pt"), "--save", "none"))
    assert "RC=0" in out
    assert "torchvision" in loaded and loaded & {"onnxruntime", "transformers", "matplotlib", "tensorboard"} == set()


def test_hf_spec_loads_transformers(clip):
    transformers = pytest.importorskip("transformers")
    config = transformers.SegformerConfig(num_encoder_blocks=4, depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16],
                                          num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=16, num_labels=19)
    torch.manual_seed(0)
    folder = clip["root"] / "segformer"
    transformers.SegformerForSemanticSegmentation(config).save_pretrained(folder)
    loaded, out = heavy_loaded(RUN_MAIN, *infer_args(clip, "hf", "--segnet", f"hf:{folder}", "--save", "none"))
    assert "RC=0" in out
    assert "transformers" in loaded and loaded & {"onnxruntime", "matplotlib", "tensorboard"} == set()


def test_onnxruntime_backend_loads_onnxruntime(clip):
    # No export folder: the run stops with that error, after choosing the backend has loaded ONNX Runtime.
    missing = clip["root"] / "no_export"
    loaded, out = heavy_loaded(RUN_MAIN, *infer_args(clip, "ort", "--backend", "onnxruntime",
                                                    "--export-dir", str(missing)))
    assert "RC=1" in out and f"{missing / 'gsvnet.json'}: not found" in out
    assert "onnxruntime" in loaded and loaded & {"torchvision", "transformers", "matplotlib", "tensorboard"} == set()
