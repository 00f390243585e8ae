"""ONNX Runtime for a profile's towers on CPU: MobileNetV2 (offline), and open_clip ViT-B-32's image
and text towers (clip).

A tower is exported from torch once (`torch.onnx.export`) into the cache dir, under a name that
carries the SHA-256 of the weights it was exported from, so new weights get a new file and nothing
is ever downloaded; a start that finds the file does not build the torch tower at all (MobileNetV2;
open_clip builds its model anyway, for the preprocessing and the tokenizer). Untrained
weights (--random-weights) are not a file: they are exported in memory and never cached. ONNX
Runtime's CPU provider runs MobileNetV2 several times faster than torch on CPU, and CLIP's image
tower at about half torch's CPU per image (bench/RESULTS.md, "ONNX Runtime on CPU").
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import onnxruntime
import torch

log = logging.getLogger("deeplens.modules")

# Part of the cached file's name: a later opset is a new export, never a stale file.
OPSET = 17
# Input names: an image tower takes a float32 NCHW batch, a text tower int64 token ids (batch x context).
PIXELS = "pixels"
TOKENS = "tokens"
OUTPUT = "embedding"


def weights_digest(path: Path) -> str:
    """The first 16 hex digits of the SHA-256 of a weights file: what names its exports."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def cached_export_path(cache_dir: Path, tower_name: str, digest: str) -> Path:
    return cache_dir / "onnx" / f"{tower_name}-{digest}-opset{OPSET}.onnx"


def _export(tower: torch.nn.Module, example: torch.Tensor, input_name: str, target) -> None:
    # The TorchScript-based exporter: the torch.export-based default needs the onnxscript package
    # and handles these towers no better. Its deprecation warnings are said once here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            tower.to("cpu", torch.float32).eval(), (example,), target, dynamo=False, opset_version=OPSET,
            input_names=[input_name], output_names=[OUTPUT],
            dynamic_axes={input_name: {0: "batch"}, OUTPUT: {0: "batch"}},
        )


def exported_tower(build: Callable[[], torch.nn.Module], example: torch.Tensor, input_name: str,
                   cache_path: Path | None) -> bytes | str:
    """The ONNX model of the tower that `build` returns (run as float32 on CPU): the file at
    `cache_path`, exported there first if it is not yet (`build` is called only then); or, without
    a cache path, the model's bytes, exported in memory."""
    if cache_path is None:
        buffer = io.BytesIO()
        _export(build(), example, input_name, buffer)
        return buffer.getvalue()
    if not cache_path.is_file():
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("exporting a tower to ONNX once: %s", cache_path)
        # Written beside the target and renamed: two servers starting at once never read half a file.
        fd, partial = tempfile.mkstemp(dir=cache_path.parent, prefix=cache_path.name, suffix=".partial")
        os.close(fd)
        try:
            _export(build(), example, input_name, partial)
            os.replace(partial, cache_path)
        finally:
            Path(partial).unlink(missing_ok=True)
    return str(cache_path)


class OnnxTower:
    """Runs an exported tower on ONNX Runtime's CPU provider; called like the torch tower it replaces
    (a batch in: pixels or token ids; one row per input out). Called from the model thread only."""

    def __init__(self, model: bytes | str, threads: int):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle intra-op threads would otherwise spin between batches on the cores the decode pool needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.dim = self.session.get_outputs()[0].shape[1]  # the embedding's width, fixed by the export

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = batch.cpu().contiguous().numpy()
        return torch.from_numpy(self.session.run([OUTPUT], {self.input_name: inputs})[0])
