"""The offline profile's image tower on torch and on ONNX Runtime (fp32, and int8 unless --no-int8),
side by side in one run, in-process: throughput, single-image latency, and how far each runtime's
embeddings are from torch's.

Images: the sample photos shipped with the package's dependencies (deeplens.samples) and each of
their near-duplicate edits (samples.TRANSFORMS), preprocessed as the module server does (border
trim, 224 px). Agreement with torch fp32: cosine per image (min and mean), and for every image as a
query the overlap of its top-10 neighbours among all of them. int8 is ONNX Runtime's static
quantisation (QDQ, per-channel weights), calibrated on the original sample photos only, measured here
and not used by the server.

    .venv/bin/python -m bench.onnx_runtime
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from deeplens.modules.images import trim_borders
from deeplens.modules.models import SemanticModel, load_semantic_model
from deeplens.modules.onnx_runtime import INPUT, OnnxImageTower
from deeplens.samples import TRANSFORMS, sample_photos

TOP_K = 10


def sample_pixels(model: SemanticModel) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(all images: originals and their edits, originals only) preprocessed for the model."""
    originals = list(sample_photos().values())
    edits = [transform(photo) for photo in originals for transform in TRANSFORMS.values()]
    prepare = lambda image: model.preprocess(trim_borders(image))  # noqa: E731
    return [prepare(image) for image in originals + edits], [prepare(image) for image in originals]


def int8_tower(fp32_onnx: str, calibration: list[torch.Tensor], folder: Path) -> OnnxImageTower:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Photos(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{INPUT: pixels[None].numpy()} for pixels in calibration])

        def get_next(self):
            return next(self.batches, None)

    prepared, quantised = folder / "prepared.onnx", folder / "int8.onnx"
    quant_pre_process(fp32_onnx, str(prepared))
    quantize_static(str(prepared), str(quantised), Photos(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return OnnxImageTower(str(quantised), torch.get_num_threads())


def embed(forward, pixels: list[torch.Tensor], batch: int) -> np.ndarray:
    rows = []
    with torch.inference_mode():
        for start in range(0, len(pixels), batch):
            rows.append(torch.nn.functional.normalize(forward(torch.stack(pixels[start:start + batch])).float(), dim=-1))
    return torch.cat(rows).numpy()


def throughput(forward, pixels: list[torch.Tensor], batch: int, seconds: float) -> float:
    stacked = torch.stack((pixels * (batch // len(pixels) + 1))[:batch])
    with torch.inference_mode():
        forward(stacked)  # warm-up
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            forward(stacked)
            done += batch
    return done / (time.perf_counter() - started)


def latency_ms(forward, pixels: list[torch.Tensor], repeats: int) -> tuple[float, float]:
    """Median and p95 of one image per call (what `search --image` asks for)."""
    times = []
    with torch.inference_mode():
        for index in range(repeats):
            started = time.perf_counter()
            forward(pixels[index % len(pixels)][None])
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), float(np.percentile(times, 95))


def top_k_overlap(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean share of each image's top-k neighbours (itself excluded) that both embeddings agree on."""
    def neighbours(vectors: np.ndarray) -> np.ndarray:
        similarity = vectors @ vectors.T
        np.fill_diagonal(similarity, -np.inf)
        return np.argsort(-similarity, axis=1)[:, :TOP_K]

    ours, theirs = neighbours(reference), neighbours(other)
    return float(np.mean([len(set(a) & set(b)) / TOP_K for a, b in zip(ours, theirs)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="images per call for throughput (the server's CPU default)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each throughput row runs")
    parser.add_argument("--latency-calls", type=int, default=100)
    parser.add_argument("--no-int8", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="deeplens-onnx-") as tmp:
        folder = Path(tmp)
        reference = load_semantic_model("offline", "cpu", runtime="torch")
        onnx_model = load_semantic_model("offline", "cpu", cache_dir=folder, runtime="onnx")
        pixels, originals = sample_pixels(reference)
        runtimes = {"torch fp32 (channels-last)": reference.image_forward, "ONNX Runtime fp32": onnx_model.image_forward}
        if not args.no_int8:
            [fp32_file] = (folder / "onnx").iterdir()
            runtimes["ONNX Runtime int8 (QDQ, per-channel)"] = int8_tower(str(fp32_file), originals, folder)

        expected = embed(reference.image_forward, pixels, args.batch)
        rows = []
        for name, forward in runtimes.items():
            vectors = embed(forward, pixels, args.batch)
            cosines = (vectors * expected).sum(axis=1)
            rate = throughput(forward, pixels, args.batch, args.seconds)
            median, p95 = latency_ms(forward, pixels, args.latency_calls)
            rows.append((name, rate, median, p95, cosines.min(), cosines.mean(), top_k_overlap(expected, vectors)))

    print(f"\nimage tower runtimes on {platform.node()} ({os.cpu_count()} cores, {platform.machine()}), "
          f"{time.strftime('%Y-%m-%d')}, offline profile (MobileNetV2, 224 px), torch {torch.__version__}, "
          f"{torch.get_num_threads()} intra-op threads; {len(pixels)} images (sample photos and their edits); "
          f"load average at the end {os.getloadavg()[0]:.1f}")
    print(f"\n| runtime | images/s (batch {args.batch}) | 1 image: median ms | 1 image: p95 ms | "
          f"cosine vs torch: min | mean | top-{TOP_K} overlap |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rate, median, p95, low, mean, overlap in rows:
        print(f"| {name} | {rate:.1f} | {median:.1f} | {p95:.1f} | {low:.5f} | {mean:.5f} | {overlap:.3f} |")


if __name__ == "__main__":
    main()
