"""airbench94's training recipe (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU",
arXiv 2404.00498; the `airbench` package 0.1.8), as a :class:`~longtail.nets.loop.Recipe` of the
project's loop, so its models train per subset, seeded per model, stacked or one at a time.

What it adds to the loop's SGD (the network itself is ``longtail.nets.models.airbench94``):

* the whitening layer, set per model from the patches of its own training subset;
* Nesterov SGD in airbench's decoupled form: ``training.lr`` and ``training.weight_decay`` are
  per 1,024 examples and independent of the momentum; BatchNorm biases learn 64x faster;
* the whitening layer's bias learns only in the first three epochs;
* Lookahead: every 5 steps the weights move to an exponential moving average of themselves
  whose decay grows as the cube of the progress, and training ends on that average;
* with ``training.augment``: translation by up to 2 pixels (reflect-padded) and alternating flip.

Label smoothing, the triangular schedule and test-time augmentation are the loop's settings
(``label_smoothing``, ``schedule: triangular``, ``tta``), set by the CIFAR presets. The constants
below are the recipe's; they are identified by the model's name, as a network's widths are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from longtail.nets.data import Augmentation
from longtail.nets.loop import Data, Ensemble, Recipe, Shard, schedule_factor

BIAS_LR_SCALE = 64.0  # BatchNorm biases' learning rate over the others' (weight decay unscaled)
DECOUPLING_BATCH = 1024  # lr and weight decay are given per this many examples
WHITEN_BIAS_EPOCHS = 3  # the whitening bias learns in these first epochs, then is frozen
WHITEN_IMAGES = 5000  # the whitening statistics come from at most this many of a model's images
WHITEN_EPS = 5e-4  # added to the patch covariance's eigenvalues before dividing by their root
LOOKAHEAD_EVERY = 5  # steps between Lookahead updates
LOOKAHEAD_DECAY = 0.95**LOOKAHEAD_EVERY  # the average's decay at the end of training
AUGMENTATION = Augmentation(pad=2, pad_mode="reflect", flip="alternating")


def patches(images: torch.Tensor, size: int) -> torch.Tensor:
    """Every ``size`` x ``size`` patch of (N, C, H, W) images, flattened: (N * (H-size+1) * (W-size+1), C*size*size)."""
    c = images.shape[1]
    return images.unfold(2, size, 1).unfold(3, size, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * size * size)


def whitening_filters(images: torch.Tensor, size: int, eps: float = WHITEN_EPS) -> torch.Tensor:
    """(2*D, C, size, size) filters, D = C*size*size: the eigenvectors of the patches' second-moment
    matrix scaled by 1/sqrt(eigenvalue + eps), largest first, then their negatives. The first D
    map the patches to features whose second moments are diag(λ / (λ + eps)): the identity for
    eps = 0."""
    flat = patches(images, size)
    eigenvalues, eigenvectors = torch.linalg.eigh(flat.T @ flat / len(flat))
    filters = (eigenvectors / torch.sqrt(eigenvalues + eps)).T.flip(0)
    filters = filters.reshape(-1, images.shape[1], size, size)
    return torch.cat([filters, -filters])


class Lookahead:
    """An exponential moving average of every floating-point tensor of a network's state
    (weights and BatchNorm statistics) that the network is reset to at each update."""

    def __init__(self, net: nn.Module) -> None:
        self.average = [t.detach().clone() for t in _float_state(net)]

    @torch.no_grad()
    def update(self, net: nn.Module, decay: float) -> None:
        for average, current in zip(self.average, _float_state(net), strict=True):
            average.lerp_(current, 1 - decay)
            current.copy_(average)


def _float_state(net: nn.Module) -> list[torch.Tensor]:
    return [t for t in net.state_dict().values() if t.is_floating_point()]


class Airbench94(Recipe):
    """airbench94's recipe for ``training.model: airbench94``. It holds the Lookahead average of
    the shard being trained."""

    lookahead: Lookahead | None = None

    def init_models(self, models: Sequence[nn.Module], data: Data, shard: Shard) -> None:
        for model, subset in zip(models, shard.subsets, strict=True):
            whiten = model.get_submodule("whiten")
            images = data.images[torch.as_tensor(subset[:WHITEN_IMAGES], device=data.device)]
            with torch.no_grad():
                whiten.weight.copy_(whitening_filters(images, whiten.kernel_size[0]))

    def optimizer(self, net: Ensemble) -> torch.optim.SGD:
        config = self.config
        kilostep = DECOUPLING_BATCH * (1 + 1 / (1 - config.momentum))
        lr = config.lr * config.batch_size / kilostep  # the loop's loss is a mean, airbench's a sum
        decay = config.weight_decay * config.batch_size / kilostep  # per step at the peak, whatever the lr
        norm_biases = [m.bias for m in net.modules() if isinstance(m, nn.BatchNorm2d) and m.bias.requires_grad]
        others = [p for p in net.parameters() if p.requires_grad and all(p is not b for b in norm_biases)]
        groups = [
            {"params": norm_biases, "peak_lr": lr * BIAS_LR_SCALE, "weight_decay": decay / (lr * BIAS_LR_SCALE)},
            {"params": others, "peak_lr": lr, "weight_decay": decay / lr},
        ]
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=True, fused=True)

    def set_lr(self, optimizer: torch.optim.Optimizer, step: int, total_steps: int) -> None:
        factor = schedule_factor(self.config.schedule, step, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = group["peak_lr"] * factor

    def augmentation(self) -> Augmentation | None:
        return AUGMENTATION if self.config.augment else None

    def start_epoch(self, net: Ensemble, epoch: int) -> None:
        for name, parameter in net.named_parameters():
            if name.endswith("whiten.bias"):
                parameter.requires_grad_(epoch < WHITEN_BIAS_EPOCHS)
        if epoch == 0:
            self.lookahead = Lookahead(net)

    def end_step(self, net: Ensemble, step: int, total_steps: int) -> None:
        done = step + 1
        if done % LOOKAHEAD_EVERY == 0:
            self.lookahead.update(net, decay=LOOKAHEAD_DECAY * (done / total_steps) ** 3)
        if done == total_steps:
            self.lookahead.update(net, decay=1.0)  # end on the average
