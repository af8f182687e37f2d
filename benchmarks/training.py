"""Training throughput: batched ensemble vs one-model-at-a-time loop.

    python benchmarks/training.py --preset mnist-mlp --json out.json [--models K] [--loop-models N] [--device cpu]
        [--precision fp32|tf32|bf16|auto]
    python benchmarks/training.py --preset digits-mlp --json out.json --model custom_models:digits_mlp  # tests/ on PYTHONPATH

Measures, in one process on the same data and configuration: models/s of
``train_ensemble`` and of the per-model reference ``train_one_by_one`` (timed on fewer
models), the FLOP/s the ensemble achieves (forward+backward FLOPs counted with
FlopCounterMode) and the device's float32 (CPU) or bf16 (CUDA) matmul FLOP/s. With a
precision other than fp32 (``auto``: what the study's default picks, resolve_precision), the ensemble is also timed
in fp32 and the speedup of the chosen precision over it is reported. With ``--model``, the
ensemble is the user's module vmapped (``longtail.nets.functional``), and the built-in
stacked MLP of the same widths is timed beside it.

Measured on a 2-core Intel Xeon (Sapphire Rapids, KVM), torch 2.14.1, CPU float32
(details and tuning notes in docs/benchmarks.md, section "Training"):

    preset        ensemble models/s  loop models/s  speedup  GFLOP/s executed (3x fwd)  matmul GFLOP/s
    digits-mlp    212                30.8           6.9x     74 (104)                   411
    mnist-mlp     0.218              0.144          1.5x     223 = 59% (297 = 78%)      380
    cifar-resnet  0.134              0.133          1.0x     263 = 68% (264)            387
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from longtail.nets.config import TrainConfig, cpu_model, resolve_device, resolve_precision
from longtail.nets.ensemble import train_ensemble, train_one_by_one
from longtail.nets.models import build_model


Images = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Preset:
    data: Callable[[], tuple[Images, Images]]  # (train, test) images and labels
    config: TrainConfig
    models: int  # default ensemble size
    loop_models: int  # default number of models the reference loop trains
    subset_fraction: float = 0.7
    n_classes: int = 10


def digits() -> tuple[Images, Images]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16).astype(np.float32)[:, None]
    return (images[:1200], data.target[:1200]), (images[1200:], data.target[1200:])


def synthetic(n_train: int, n_test: int, shape: tuple[int, int, int]) -> Callable[[], tuple[Images, Images]]:
    """Uniform random images with random labels: throughput does not depend on content."""

    def make() -> tuple[Images, Images]:
        rng = np.random.default_rng(0)
        n = n_train + n_test
        images, labels = rng.random((n, *shape), dtype=np.float32), rng.integers(0, 10, n)
        return (images[:n_train], labels[:n_train]), (images[n_train:], labels[n_train:])

    return make


PRESETS = {
    "digits-mlp": Preset(digits, TrainConfig(hidden_sizes=(128,), epochs=10), models=256, loop_models=16),
    "mnist-mlp": Preset(synthetic(60_000, 10_000, (1, 28, 28)), TrainConfig(epochs=10), models=8, loop_models=2),
    "mnist-cnn": Preset(synthetic(5_000, 1_000, (1, 28, 28)), TrainConfig(model="cnn", epochs=2), models=4, loop_models=1),
    "cifar-resnet": Preset(
        synthetic(1_000, 500, (3, 32, 32)),
        TrainConfig(model="resnet", epochs=1, batch_size=128, lr=0.1, augment=True, schedule="linear"),
        models=4,
        loop_models=2,
    ),
}


def subset_masks(n_models: int, n: int, fraction: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    masks = np.zeros((n_models, n), dtype=bool)
    for row in masks:
        row[rng.choice(n, round(fraction * n), replace=False)] = True
    return masks


def models_per_second(trainer: Callable, preset: Preset, config: TrainConfig, n_models: int, repeats: int) -> float:
    """Best wall-clock throughput of ``trainer`` over ``repeats`` runs, after a one-epoch warm-up."""
    (x, y), test = preset.data()
    masks = subset_masks(n_models, len(x), preset.subset_fraction)
    trainer(x, y, masks[:1], np.arange(1), replace(config, epochs=1), preset.n_classes, {"test": test})
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        trainer(x, y, masks, np.arange(n_models), config, preset.n_classes, {"test": test})
        seconds.append(time.perf_counter() - started)
    return n_models / min(seconds)


@dataclass(frozen=True)
class Flops:
    """FLOPs of one model's training run (all epochs) plus its evaluation on the test set."""

    executed: float  # what the kernels compute, counted by FlopCounterMode
    model: float  # the usual "3 x forward" convention (6 x params per example for an MLP)


def flops_per_model(preset: Preset, config: TrainConfig) -> Flops:
    (x, _), (x_test, _) = preset.data()
    # Counted on one plain model: the stacked one does the same arithmetic, but FlopCounterMode
    # ignores groups in the weight gradient of grouped convolutions and would overcount it.
    batch = 4  # FLOPs are linear in the batch size
    net = build_model(config.model, x.shape[1:], preset.n_classes, config.hidden_sizes)
    inputs = torch.zeros(batch, *x.shape[1:])
    with FlopCounterMode(display=False) as train_counter:
        F.cross_entropy(net(inputs), torch.zeros(batch, dtype=torch.long)).backward()
    with FlopCounterMode(display=False) as eval_counter, torch.no_grad():
        net.eval()(inputs)
    train_per_example = train_counter.get_total_flops() / batch
    forward_per_example = eval_counter.get_total_flops() / batch
    n_train = config.epochs * round(preset.subset_fraction * len(x))
    evaluation = len(x_test) * forward_per_example
    return Flops(n_train * train_per_example + evaluation, 3 * n_train * forward_per_example + evaluation)


def matmul_flops(device: torch.device, size: int = 4096, repeats: int = 10) -> float:
    """Best-case dense matmul FLOP/s (fastest of ``repeats``): float32 on CPU, bf16 on CUDA."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return 2 * size**3 / min(times[1:])


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.get_num_threads()} threads)"


def builtin_twin(preset: Preset, config: TrainConfig, model: str) -> TrainConfig:
    """The built-in MLP with the hidden widths of the user's module ``model`` (which must be an
    MLP of the same shape: same parameter count), to compare the vmapped path with the stacked one."""
    (x, _), _ = preset.data()
    custom = build_model(model, x.shape[1:], preset.n_classes)
    widths = tuple(m.out_features for m in custom.modules() if isinstance(m, torch.nn.Linear))[:-1]
    twin = replace(config, model="mlp", hidden_sizes=widths)
    builtin = build_model("mlp", x.shape[1:], preset.n_classes, widths)
    if not widths or sum(p.numel() for p in custom.parameters()) != sum(p.numel() for p in builtin.parameters()):
        raise SystemExit(f"{model} is not an MLP like the built-in one; --model needs e.g. tests/custom_models.py:digits_mlp")
    return twin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, required=True)
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--models", type=int, help="ensemble size (default: the preset's)")
    parser.add_argument("--loop-models", type=int, help="models the reference loop trains (default: the preset's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=1, help="time each trainer this often, keep the best")
    parser.add_argument("--precision", choices=("auto", "fp32", "tf32", "bf16"), default="fp32")
    parser.add_argument(
        "--fp32-baseline", action=argparse.BooleanOptionalAction, default=True,
        help="also time the ensemble in fp32 when --precision is not fp32 (--no-fp32-baseline halves a large run)",
    )
    parser.add_argument(
        "--model", help="factory import path 'package.module:factory' of an MLP: its vmapped ensemble against the built-in stacked MLP"
    )
    args = parser.parse_args()

    preset = PRESETS[args.preset]
    device = resolve_device(args.device)
    config = replace(preset.config, device=str(device), precision=resolve_precision(args.precision, str(device), args.model or preset.config.model))
    if args.model:
        builtin = builtin_twin(preset, config, args.model)
        config = replace(config, model=args.model)
    n_models = args.models or preset.models
    load_before = os.getloadavg()[0]
    vectorized = models_per_second(train_ensemble, preset, config, n_models, args.repeats)
    fp32, timed_fp32 = vectorized, args.fp32_baseline or config.precision == "fp32"
    if config.precision != "fp32" and args.fp32_baseline:
        fp32 = models_per_second(train_ensemble, preset, replace(config, precision="fp32"), n_models, args.repeats)
    loop = models_per_second(train_one_by_one, preset, config, args.loop_models or preset.loop_models, args.repeats)
    flops = flops_per_model(preset, config)
    peak = matmul_flops(device)
    result = {
        "preset": args.preset,
        "model": config.model,
        "device": describe(device),
        "models": n_models,
        "precision": config.precision,
        "vectorized_models_per_s": vectorized,
        "fp32_vectorized_models_per_s": fp32 if timed_fp32 else None,
        "precision_speedup": vectorized / fp32 if timed_fp32 else None,
        "loop_models_per_s": loop,
        "speedup": vectorized / loop,
        "achieved_gflops": vectorized * flops.executed / 1e9,
        "peak_gflops": peak / 1e9,
        "achieved_model_gflops": vectorized * flops.model / 1e9,  # 3 x forward FLOPs convention
        "torch": torch.__version__,
        "load_average": [load_before, os.getloadavg()[0]],  # other work on the machine skews CPU timings
    }
    if args.model:
        result["builtin_stacked_models_per_s"] = models_per_second(train_ensemble, preset, builtin, n_models, args.repeats)
        result["vmapped_over_builtin"] = vectorized / result["builtin_stacked_models_per_s"]
    print(json.dumps(result, indent=2))
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
