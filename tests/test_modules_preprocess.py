"""The offline profile's preprocessing (torch's uint8 resize, numpy scaling and normalisation) gives
the model, bit for bit, the tensor that torchvision's ToDtype + Normalize pipeline gave it, so every
embedding stays what it was."""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import v2 as transforms

from deeplens.modules.models import IMAGENET_MEAN, IMAGENET_STD, load_semantic_model
from deeplens.samples import TRANSFORMS, sample_photos, synthetic_image

TORCHVISION = transforms.Compose([
    transforms.PILToTensor(),
    transforms.Resize((224, 224), antialias=True),
    transforms.ToDtype(torch.float32, scale=True),
    transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
])


def test_offline_preprocessing_equals_torchvisions_bit_for_bit():
    model = load_semantic_model("offline", "cpu", runtime="torch")
    photos = list(sample_photos().values())
    images = [*photos, *(transform(photos[0]) for transform in TRANSFORMS.values()),
              *(synthetic_image(seed, (256, 192)) for seed in range(20)),
              Image.new("RGB", (1, 1), (255, 0, 0)), Image.new("RGB", (256, 40), (0, 0, 0))]
    for index, image in enumerate(images):
        pixels = model.preprocess(image)
        assert pixels.dtype == torch.float32 and pixels.shape == (3, 224, 224)
        assert torch.equal(pixels, TORCHVISION(image)), f"image {index} ({image.size})"
