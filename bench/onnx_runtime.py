"""A profile's towers on torch and on ONNX Runtime side by side in one run, in-process:
throughput, single-input latency, the CPU time each image or text costs, and how far each
runtime's embeddings are from torch's.

offline: MobileNetV2 (fp32; int8 too unless --no-int8). clip: ViT-B-32's image tower and its text
tower (needs --random-weights here: no model hub; or --clip-checkpoint). `--threads 1,2` repeats
each ONNX Runtime row with that many intra-op threads.

Images: the sample photos shipped with the package's dependencies (deeplens.samples) and each of
their near-duplicate edits (samples.TRANSFORMS), preprocessed as the module server does (border
trim, then the profile's preprocessing). Texts: short captions. Agreement with torch fp32: cosine
per input (min and mean), and for every image as a query the overlap of its top-10 neighbours among
all of them. int8 is ONNX Runtime's static quantisation (QDQ, per-channel weights), calibrated on the
original sample photos only, measured here and not used by the server.

    .venv/bin/python -m bench.onnx_runtime
    .venv/bin/python -m bench.onnx_runtime --profile clip --random-weights --threads 1,2
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
from deeplens.modules.onnx_runtime import PIXELS, OnnxTower
from deeplens.samples import TRANSFORMS, sample_photos

TOP_K = 10
CAPTIONS = ["a cup of coffee", "a rocket on the launch pad", "an astronaut in a white suit", "a cat on a sofa",
            "bricks in a wall", "coins on a table", "a colour wheel", "a galaxy in deep space",
            "a man with a camera on a tripod", "a page of printed text"]


def sample_pixels(model: SemanticModel) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(all images: originals and their edits, originals only) preprocessed for the model."""
    originals = list(sample_photos().values())
    edits = [transform(photo) for photo in originals for transform in TRANSFORMS.values()]
    prepare = lambda image: model.preprocess(trim_borders(image))  # noqa: E731
    return [prepare(image) for image in originals + edits], [prepare(image) for image in originals]


def int8_tower(fp32_onnx: str, calibration: list[torch.Tensor], folder: Path) -> OnnxTower:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Photos(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{PIXELS: pixels[None].numpy()} for pixels in calibration])

        def get_next(self):
            return next(self.batches, None)

    prepared, quantised = folder / "prepared.onnx", folder / "int8.onnx"
    quant_pre_process(fp32_onnx, str(prepared))
    quantize_static(str(prepared), str(quantised), Photos(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return OnnxTower(str(quantised), torch.get_num_threads())


def embed(forward, pixels: list[torch.Tensor], batch: int) -> np.ndarray:
    rows = []
    with torch.inference_mode():
        for start in range(0, len(pixels), batch):
            rows.append(torch.nn.functional.normalize(forward(torch.stack(pixels[start:start + batch])).float(), dim=-1))
    return torch.cat(rows).numpy()


def throughput(forward, inputs: list[torch.Tensor], batch: int, seconds: float) -> tuple[float, float]:
    """Inputs per second, and CPU ms per input (this process, all its threads: what it costs when the
    other core is busy too)."""
    stacked = torch.stack((inputs * (batch // len(inputs) + 1))[:batch])
    with torch.inference_mode():
        forward(stacked)  # warm-up
        done, started, cpu_started = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - started < seconds:
            forward(stacked)
            done += batch
    return done / (time.perf_counter() - started), 1000 * (time.process_time() - cpu_started) / done


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


def compare(forwards: dict, inputs: list[torch.Tensor], batch: int, args, neighbours: bool = True) -> list[tuple]:
    """One row per runtime: rate and CPU ms per input at `batch`, 1-input latency, agreement with the
    first (top-k overlap only where there are enough inputs to rank)."""
    rows, expected = [], None
    for name, forward in forwards.items():
        vectors = embed(forward, inputs, batch)
        expected = vectors if expected is None else expected
        cosines = (vectors * expected).sum(axis=1)
        rate, cpu_ms = throughput(forward, inputs, batch, args.seconds)
        median, p95 = latency_ms(forward, inputs, args.latency_calls)
        overlap = f"{top_k_overlap(expected, vectors):.3f}" if neighbours else "-"
        rows.append((name, rate, cpu_ms, median, p95, cosines.min(), cosines.mean(), overlap))
    return rows


def print_rows(title: str, unit: str, batch: int, rows: list[tuple]) -> None:
    print(f"\n{title}\n")
    print(f"| runtime | {unit}s/s (batch {batch}) | CPU ms per {unit} | 1 {unit}: median ms | 1 {unit}: p95 ms | "
          f"cosine vs torch: min | mean | top-{TOP_K} overlap |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, rate, cpu_ms, median, p95, low, mean, overlap in rows:
        print(f"| {name} | {rate:.1f} | {cpu_ms:.1f} | {median:.1f} | {p95:.1f} | {low:.5f} | {mean:.5f} | {overlap} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=["offline", "clip"], default="offline")
    parser.add_argument("--random-weights", action="store_true", help="untrained weights (clip: no model hub here)")
    parser.add_argument("--clip-checkpoint", type=Path)
    parser.add_argument("--batch", type=int, default=8, help="inputs per call for throughput (the server's CPU default)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each throughput row runs")
    parser.add_argument("--latency-calls", type=int, default=100)
    parser.add_argument("--threads", default=str(torch.get_num_threads()),
                        help="comma-separated ONNX Runtime intra-op thread counts, one set of rows each")
    parser.add_argument("--no-int8", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="deeplens-onnx-") as tmp:
        folder = Path(tmp)
        load = lambda runtime: load_semantic_model(  # noqa: E731
            args.profile, "cpu", args.random_weights, folder, args.clip_checkpoint, runtime)
        reference = load("torch")
        pixels, originals = sample_pixels(reference)
        images = {f"torch fp32{' (channels-last)' if args.profile == 'offline' else ''}": reference.image_forward}
        texts = {"torch fp32": reference.text_forward}
        torch_threads = torch.get_num_threads()
        for threads in map(int, args.threads.split(",")):
            torch.set_num_threads(threads)  # what the server gives ONNX Runtime (--torch-threads)
            model = load("onnx")
            images[f"ONNX Runtime fp32, {threads} thread(s)"] = model.image_forward
            if model.supports_text:
                texts[f"ONNX Runtime fp32, {threads} thread(s)"] = model.text_forward
        torch.set_num_threads(torch_threads)
        exports = sorted((folder / "onnx").iterdir()) if (folder / "onnx").exists() else []
        if args.profile == "offline" and not args.no_int8 and exports:  # not with random weights (no file)
            images["ONNX Runtime int8 (QDQ, per-channel)"] = int8_tower(str(exports[0]), originals, folder)
        image_rows = compare(images, pixels, args.batch, args)
        text_rows = []
        if reference.supports_text:
            # The text forwards take captions: each input here is a caption's index.
            indexes = [torch.tensor([index]) for index in range(len(CAPTIONS))]
            by_index = {name: (lambda batch, forward=forward: forward([CAPTIONS[i] for i in batch.flatten().tolist()]))
                        for name, forward in texts.items()}
            text_rows = compare(by_index, indexes, args.batch, args, neighbours=False)

    print(f"\ntower runtimes on {platform.node()} ({os.cpu_count()} cores, {platform.machine()}), "
          f"{time.strftime('%Y-%m-%d')}, profile {args.profile} ({reference.name}, weights: {reference.weights}), "
          f"torch {torch.__version__}; {len(pixels)} images (sample photos and their edits); "
          f"load average at the end {os.getloadavg()[0]:.1f}")
    print_rows("Image tower", "image", args.batch, image_rows)
    if text_rows:
        print_rows(f"Text tower ({len(CAPTIONS)} captions)", "text", args.batch, text_rows)


if __name__ == "__main__":
    main()
