"""The trainer tests' data: sklearn digits as (N, 1, 8, 8) images in [0, 1], split at random
into N_TRAIN training examples and a test set, and random training subsets of them."""

import numpy as np
from sklearn.datasets import load_digits

N_TRAIN = 1200


def digits_split() -> tuple[np.ndarray, np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    data = load_digits()
    images = (data.images / 16).astype(np.float32)[:, None]
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:N_TRAIN], order[N_TRAIN:]
    return images[train], data.target[train], {"test": (images[test], data.target[test])}


def subset_masks(sizes, n=N_TRAIN, seed=1):
    """Bool (len(sizes), n): row k holds ``sizes[k]`` examples drawn at random (seeded)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((len(sizes), n), dtype=bool)
    for row, size in zip(masks, sizes):
        row[rng.choice(n, size, replace=False)] = True
    return masks
