"""Per-model randomness, input standardisation and on-device augmentation.

Everything random about model k (initial weights, data order, augmentation) comes from
``(seed, model_id)`` alone, so a model trains identically whichever other models share
its batch, and the one-by-one reference reproduces the batched ensemble.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PAD = 4  # random-crop padding, as in the usual CIFAR recipe


def model_seeds(seed: int, model_id: int) -> tuple[int, int]:
    """Independent (initialisation, data) seeds of one model."""
    init_seed, data_seed = np.random.SeedSequence([seed, int(model_id)]).generate_state(2, np.uint64)
    return int(init_seed), int(data_seed)


@dataclass(frozen=True)
class EpochPlan:
    """One epoch of K models: (K, n) example indices and optional (K, n, 2) crop offsets, (K, n) flips."""

    order: torch.Tensor
    offsets: torch.Tensor | None
    flips: torch.Tensor | None


class DataStreams:
    """The data-order (and augmentation) random streams of K models training on equal-size subsets."""

    def __init__(self, subsets: np.ndarray, data_seeds: list[int], augment: bool) -> None:
        self.subsets = torch.as_tensor(subsets, dtype=torch.long)  # (K, n) indices into the data
        self.generators = [torch.Generator().manual_seed(s) for s in data_seeds]
        self.augment = augment

    def next_epoch(self, device: torch.device) -> EpochPlan:
        """A fresh permutation of each subset (plus crop offsets and flips when augmenting)."""
        n = self.subsets.shape[1]
        perms = [torch.randperm(n, generator=g) for g in self.generators]
        order = torch.gather(self.subsets, 1, torch.stack(perms)).to(device)
        if not self.augment:
            return EpochPlan(order, None, None)
        offsets = torch.stack([torch.randint(0, 2 * PAD + 1, (n, 2), generator=g) for g in self.generators])
        flips = torch.stack([torch.randint(0, 2, (n,), generator=g, dtype=torch.bool) for g in self.generators])
        return EpochPlan(order, offsets.to(device), flips.to(device))


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of (N, C, H, W) images, shaped (1, C, 1, 1) for broadcasting."""
    dims = (0, 2, 3)
    return images.mean(dims, keepdim=True), images.std(dims, keepdim=True).clamp_min(1e-6)


def crop_and_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Random crop with zero padding of PAD pixels and horizontal flip, one draw per image.

    images (M, C, H, W); offsets (M, 2) in [0, 2*PAD]; flips (M,) bool. A single gather
    on the padded batch, so it runs on the device for all models at once.
    """
    m, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (PAD, PAD, PAD, PAD))
    rows = offsets[:, :1] + torch.arange(h, device=images.device)  # (M, H)
    cols = torch.arange(w, device=images.device).expand(m, w)
    cols = offsets[:, 1:] + torch.where(flips[:, None], cols.flip(1), cols)  # (M, W)
    batch = torch.arange(m, device=images.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
