"""How much of mem's estimation noise could any unbiased variance reduction remove? (issue 11, item 5)

On the memorized examples nearly all of the plain estimator's variance is that of the models
without the example (``variance.py``: ``out_variance_share``), each of which is right or wrong
on it: a Bernoulli draw whose variance p(1 − p) splits into what the model's training subset
decides, Var(E[correct | S]), and what training noise (initial weights, data order, floating
point) adds on top. Regression adjustment, control variates on memberships, balanced or
stratified designs can only remove the first part. Three measures on the default mnist5k study
(its data, subset masks and network, in fp32), each the intra-class correlation (ICC, one-way
ANOVA) of the out-models' correctness on the memorized examples, within groups of models:

* ``twins``: pairs of models on the *same* subset with independent seeds. ICC =
  Var(E[correct | S]) / Var(correct): the largest share of the out-variance that any function
  of the subsets can explain, hence the ceiling of every design-based technique.
* ``shared_seeds``: blocks of ``--block`` models on independent subsets that share their
  initialisation and data-order seeds (common random numbers). An ICC near 0 means shared
  seeds correlate nothing once the subsets differ, so a blocked estimator gains nothing.
* ``branches``: ``--trunks`` models trained to the last ``--last`` epochs, each then continued
  ``--branches`` times with fresh data orders (momentum included). ICC near 1 means the late
  epochs add little noise, so cheap continuations are nearly copies and buy no precision.

The memorized examples are those with mem ≥ 0.25 by the reference models 500–1,999 (``--reference``) of a
``replication.py prepare`` folder trained by ``train_arrays.py`` (``--trained``); the training
here uses that folder's data, masks and config, on the CPU.

    python benchmarks/noise.py --trained FP32 --json noise.json   # ~12 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from replication import REFERENCE, trained_arrays  # noqa: E402
from training import cpu_model  # noqa: E402
from variance import fixed_set  # noqa: E402

from longtail.estimate import memorization  # noqa: E402
from longtail.nets.config import TrainConfig  # noqa: E402
from longtail.nets.data import DataStreams, model_seeds  # noqa: E402
from longtail.nets.ensemble import train_ensemble  # noqa: E402
from longtail.nets.loop import Recipe, fit, init_model, predict, prepare_data, sgd  # noqa: E402
from longtail.nets.stacking import StackedModels  # noqa: E402

FRESH = 10**6  # model ids from here on share no seed with the study's models


def icc(values: np.ndarray, valid: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per column, the one-way ANOVA intra-class correlation of ``values`` (T, e) over the
    ``valid`` rows, grouped by ``groups`` (T,); groups with fewer than 2 valid rows are dropped,
    columns left with fewer than 2 groups or no variance are NaN."""
    result = np.full(values.shape[1], np.nan)
    for column in range(values.shape[1]):
        keep = valid[:, column]
        labels, sizes = np.unique(groups[keep], return_counts=True)
        kept = np.isin(groups, labels[sizes >= 2]) & keep
        _, codes, sizes = np.unique(groups[kept], return_inverse=True, return_counts=True)
        y, g, n = values[kept, column], len(sizes), kept.sum()
        if g < 2:
            continue
        means = np.bincount(codes, y) / sizes
        between = (sizes * (means - y.mean()) ** 2).sum() / (g - 1)
        within = ((y - means[codes]) ** 2).sum() / (n - g)
        n0 = (n - (sizes**2).sum() / n) / (g - 1)
        total = between + (n0 - 1) * within
        result[column] = (between - within) / total if total > 0 else np.nan
    return result


def _summary(values: np.ndarray) -> dict[str, float]:
    values = values[np.isfinite(values)]
    if not values.size:
        return {"examples": 0, **dict.fromkeys(("median", "mean", "p10", "p90"), math.nan)}
    return {"examples": int(values.size), "median": float(np.median(values)), "mean": float(values.mean()),
            "p10": float(np.percentile(values, 10)), "p90": float(np.percentile(values, 90))}


def _train(inputs: dict, config: TrainConfig, masks: np.ndarray, model_ids: np.ndarray) -> np.ndarray:
    images, labels = inputs["train_images"], inputs["train_labels"]
    result = train_ensemble(images, labels, masks, model_ids, config, int(inputs["n_classes"]), {"train": (images, labels)})
    return result.correct["train"]


def twins(inputs: dict, config: TrainConfig, pairs: int, examples: np.ndarray) -> dict:
    masks = np.repeat(inputs["masks"][:pairs], 2, axis=0)
    correct = _train(inputs, config, masks, FRESH + np.arange(len(masks)))
    groups = np.repeat(np.arange(pairs), 2)
    return _summary(icc(correct[:, examples].astype(float), ~masks[:, examples], groups))


def shared_seeds(inputs: dict, config: TrainConfig, models: int, block: int, examples: np.ndarray) -> dict:
    masks = inputs["masks"][:models]
    groups = np.arange(models) // block
    correct = _train(inputs, config, masks, FRESH + groups)  # one model id, hence one pair of seeds, per block
    return _summary(icc(correct[:, examples].astype(float), ~masks[:, examples], groups))


def branches(inputs: dict, config: TrainConfig, trunks: int, copies: int, last: int, examples: np.ndarray) -> dict:
    images, labels = inputs["train_images"], inputs["train_labels"]
    data = prepare_data(images, labels, {"train": (images, labels)}, int(inputs["n_classes"]), torch.device("cpu"), torch.float32)
    masks = inputs["masks"][:trunks]
    subsets = np.stack([np.flatnonzero(m) for m in masks])

    recipe = Recipe(config)

    def stacked(count: int) -> tuple[StackedModels, torch.optim.Optimizer]:
        net = StackedModels([init_model(config, FRESH + i, data.input_shape, data.n_classes) for i in range(count)])
        return net, sgd(net, config)

    trunk, trunk_optimizer = stacked(trunks)
    seeds = [model_seeds(config.seed, FRESH + i)[1] for i in range(trunks)]
    head = range(config.epochs - last)
    fit(trunk, DataStreams(subsets, seeds, False), data, recipe, optimizer=trunk_optimizer, epochs=head)
    net, optimizer = stacked(trunks * copies)  # each trunk's weights and momenta, copied into its branches
    with torch.no_grad():
        for source, target in zip(trunk.parameters(), net.parameters()):
            target.copy_(source.repeat_interleave(copies, 0))
            optimizer.state[target]["momentum_buffer"] = trunk_optimizer.state[source]["momentum_buffer"].repeat_interleave(copies, 0)
    seeds = [model_seeds(config.seed, 2 * FRESH + i)[1] for i in range(trunks * copies)]
    streams = DataStreams(np.repeat(subsets, copies, axis=0), seeds, False)
    fit(net, streams, data, recipe, optimizer=optimizer, epochs=range(config.epochs - last, config.epochs))
    net.eval()
    correct = predict(net, data.images, data.labels, 2 * config.batch_size, recipe)[0].numpy()
    member = np.repeat(masks, copies, axis=0)
    groups = np.repeat(np.arange(trunks), copies)
    return _summary(icc(correct[:, examples].astype(float), ~member[:, examples], groups))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trained", type=Path, required=True, help="a replication.py prepare folder trained by train_arrays.py")
    parser.add_argument("--pairs", type=int, default=250)
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--block", type=int, default=25)
    parser.add_argument("--trunks", type=int, default=250)
    parser.add_argument("--branches", type=int, default=4)
    parser.add_argument("--last", type=int, default=1)
    parser.add_argument("--reference", type=int, nargs=2, default=REFERENCE, help="reference models [start, stop)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    inputs = dict(np.load(args.trained / "inputs.npz", allow_pickle=False))
    settings = json.loads((args.trained / "config.json").read_text())
    config = replace(TrainConfig(**{**settings, "hidden_sizes": tuple(settings["hidden_sizes"])}), device="cpu", precision="fp32")
    arrays = trained_arrays(args.trained)
    models = slice(*args.reference)
    examples = fixed_set(arrays, memorization(arrays["masks"][models], arrays["train_correct"][models]))
    result: dict = {"machine": cpu_model(), "torch": torch.__version__,
                    "memorized_examples": len(examples)}
    for name, measure in (
        ("twins", lambda: twins(inputs, config, args.pairs, examples)),
        ("shared_seeds", lambda: shared_seeds(inputs, config, args.models, args.block, examples)),
        ("branches", lambda: branches(inputs, config, args.trunks, args.branches, args.last, examples)),
    ):
        started = time.perf_counter()
        result[name] = {**measure(), "seconds": time.perf_counter() - started}
        print(name, json.dumps(result[name]), flush=True)
    result["settings"] = {k: getattr(args, k) for k in ("pairs", "models", "block", "trunks", "branches", "last", "reference")}
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
