"""The trainer tests' data: sklearn digits as (N, 1, 8, 8) images in [0, 1], split at random
into N_TRAIN training examples and a test set."""

import numpy as np
from sklearn.datasets import load_digits

N_TRAIN = 1200


def digits_split() -> tuple[np.ndarray, np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    data = load_digits()
    images = (data.images / 16).astype(np.float32)[:, None]
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:N_TRAIN], order[N_TRAIN:]
    return images[train], data.target[train], {"test": (images[test], data.target[test])}
