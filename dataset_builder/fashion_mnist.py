"""Fashion-MNIST from the Debian package `dataset-fashion-mnist` (real Zalando product photos, 28x28 grey)."""

import gzip
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {"train": "train", "test": "t10k"}


def load_fashion_mnist(split: str = "train", root: Path = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of one split, read from the idx files."""
    if split not in _FILES:
        raise ValueError(f"split={split!r}: Fashion-MNIST has {sorted(_FILES)}")
    prefix = root / _FILES[split]
    images_path, labels_path = Path(f"{prefix}-images-idx3-ubyte.gz"), Path(f"{prefix}-labels-idx1-ubyte.gz")
    for path in (images_path, labels_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: install the Debian package dataset-fashion-mnist (make setup)"
            )
    with gzip.open(images_path) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels_path) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
    return images, labels
