"""Per-model randomness, input standardisation, on-device augmentation and test-time augmentation.

Everything random about model k (initial weights, data order, augmentation) comes from
``(seed, model_id)`` alone, so a model trains identically whichever other models share
its batch, and the one-by-one reference reproduces the batched ensemble.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

PAD = 4  # random-crop padding, as in the usual CIFAR recipe
FLIPS = ("random", "alternating")
#: Test-time augmentation (airbench's levels 0-2, Jordan 2024): none; the mean of the logits of
#: the image and its mirror image; that, averaged with the same mean over two copies translated
#: by one pixel (up-left and down-right, reflect-padded).
TTAS = ("none", "mirror", "mirror_translate")


@dataclass(frozen=True)
class Augmentation:
    """Random translation by up to ``pad`` pixels (a crop of the image padded with ``pad_mode``:
    ``constant`` zeros or ``reflect``) and a horizontal flip: ``random``, a fresh coin per image
    and epoch, or ``alternating`` (Jordan 2024, section 3.6): a coin per image in the first epoch,
    then every image flipped in the odd epochs relative to that choice."""

    pad: int = PAD
    pad_mode: str = "constant"
    flip: str = "random"

    def __post_init__(self) -> None:
        if self.flip not in FLIPS:
            raise ValueError(f"flip={self.flip!r}: expected one of {', '.join(FLIPS)}")


CROP_AND_FLIP = Augmentation()  # the trainer's ``augment: true``


def model_seeds(seed: int, model_id: int) -> tuple[int, int]:
    """Independent (initialisation, data) seeds of one model."""
    init_seed, data_seed = np.random.SeedSequence([seed, int(model_id)]).generate_state(2, np.uint64)
    return int(init_seed), int(data_seed)


@dataclass(frozen=True)
class EpochPlan:
    """One epoch of K models: (K, n) example indices and optional (K, n, 2) crop offsets, (K, n)
    flips, drawn for ``augmentation``."""

    order: torch.Tensor
    offsets: torch.Tensor | None
    flips: torch.Tensor | None
    augmentation: Augmentation | None = None


class DataStreams:
    """The data-order (and augmentation) random streams of K models training on equal-size subsets."""

    def __init__(self, subsets: np.ndarray, data_seeds: list[int], augmentation: Augmentation | None) -> None:
        self.subsets = torch.as_tensor(subsets, dtype=torch.long)  # (K, n) indices into the data
        self.generators = [torch.Generator().manual_seed(s) for s in data_seeds]
        self.augmentation = augmentation
        self.epoch = 0
        self.first_flips: torch.Tensor | None = None  # alternating flip: (K, n) first-epoch coins, by subset position

    def next_epoch(self, device: torch.device) -> EpochPlan:
        """A fresh permutation of each subset (plus crop offsets and flips when augmenting)."""
        n = self.subsets.shape[1]
        perms = torch.stack([torch.randperm(n, generator=g) for g in self.generators])
        order = torch.gather(self.subsets, 1, perms).to(device)
        augmentation, self.epoch = self.augmentation, self.epoch + 1
        if augmentation is None:
            return EpochPlan(order, None, None)
        offsets = torch.stack([torch.randint(0, 2 * augmentation.pad + 1, (n, 2), generator=g) for g in self.generators])
        if augmentation.flip == "random":
            flips = self._coins(n)
        else:
            if self.first_flips is None:
                self.first_flips = self._coins(n)
            flips = torch.gather(self.first_flips, 1, perms) ^ (self.epoch % 2 == 0)  # epochs 2, 4, ... flip back
        return EpochPlan(order, offsets.to(device), flips.to(device), augmentation)

    def _coins(self, n: int) -> torch.Tensor:
        return torch.stack([torch.randint(0, 2, (n,), generator=g, dtype=torch.bool) for g in self.generators])


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of (N, C, H, W) images, shaped (1, C, 1, 1) for broadcasting."""
    dims = (0, 2, 3)
    return images.mean(dims, keepdim=True), images.std(dims, keepdim=True).clamp_min(1e-6)


def crop_and_flip(
    images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int = PAD, pad_mode: str = "constant"
) -> torch.Tensor:
    """Random crop of the images padded by ``pad`` pixels (zeros, or ``reflect``) and horizontal
    flip, one draw per image.

    images (M, C, H, W); offsets (M, 2) in [0, 2*pad]; flips (M,) bool. A single gather
    on the padded batch, so it runs on the device for all models at once.
    """
    m, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode=pad_mode)
    rows = offsets[:, :1] + torch.arange(h, device=images.device)  # (M, H)
    cols = torch.arange(w, device=images.device).expand(m, w)
    cols = offsets[:, 1:] + torch.where(flips[:, None], cols.flip(1), cols)  # (M, W)
    batch = torch.arange(m, device=images.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def tta_logits(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tta: str) -> torch.Tensor:
    """The logits ``forward`` gives ``images`` (B, C, H, W) under test-time augmentation ``tta``
    (one of :data:`TTAS`), averaged as airbench's ``infer`` does (Jordan 2024)."""
    if tta not in TTAS:
        raise ValueError(f"tta={tta!r}: expected one of {', '.join(TTAS)}")
    if tta == "none":
        return forward(images)

    def mirrored(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * forward(x) + 0.5 * forward(x.flip(-1))

    logits = mirrored(images)
    if tta == "mirror":
        return logits
    h, w = images.shape[-2:]
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    translated = [mirrored(padded[..., :h, :w]), mirrored(padded[..., 2:, 2:])]
    return 0.5 * logits + 0.25 * (translated[0] + translated[1])
