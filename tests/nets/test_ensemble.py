import logging
from dataclasses import replace

import numpy as np
import pytest
import torch

from longtail.estimate import memorization
from longtail.nets.data import PAD, DataStreams, crop_and_flip, model_seeds
from longtail.nets.config import TrainConfig
from longtail.nets.ensemble import EnsembleResult, train_ensemble, train_one_by_one
from longtail.nets.loop import Recipe, fit, init_model, lr_at, prepare_data, tf32_matmuls
from longtail.nets.models import build_model
from longtail.nets.sizing import CPU_SHARD_BYTES, bytes_per_model, models_in_memory
from longtail.nets.stacking import StackedModels
from tests.nets.digits_split import digits_split, subset_masks

# The CPU's kernels, also on a machine with a GPU (tests/nets/test_cuda.py checks the GPU's).
SMALL = TrainConfig(
    hidden_sizes=(32,), epochs=2, batch_size=64, lr=0.02, momentum=0.9, weight_decay=5e-4, keep_models=True, device="cpu"
)
# Equivalence checks (batched vs plain, other shard groupings) train in float64. Batched and
# plain kernels, and different CPUs (oneDNN/BLAS paths differ between Intel AMX and AMD Zen 4),
# round differently: in float32 by ~1e-7 per operation, which a flipped max-pool near-tie
# amplifies to ~1e-4 after two epochs. In float64 that rounding is ~1e-16 and stays far below
# FP64_ATOL after a few dozen SGD steps, while a model seeing another model's subset, or a
# gradient off by 0.1%, moves probabilities by 0.17 / 1.4e-3 and weights by 0.05 / 8e-4 (mlp,
# measured; see the negative controls).
EXACT = replace(SMALL, precision="fp64")
FP64_ATOL = 1e-9


@pytest.fixture(scope="module")
def digits():
    return digits_split()


def train(trainer, digits, masks, config, model_ids=None, **kwargs):
    images, labels, eval_sets = digits
    ids = np.arange(len(masks)) if model_ids is None else model_ids
    return trainer(images, labels, masks, ids, config, 10, eval_sets, **kwargs)


def assert_same_models(a: EnsembleResult, b: EnsembleResult, atol=FP64_ATOL):
    """The same models up to float64 rounding: predictions, losses and every weight."""
    np.testing.assert_array_equal(a.correct["test"], b.correct["test"])
    np.testing.assert_allclose(a.true_prob["test"], b.true_prob["test"], rtol=0, atol=atol)
    np.testing.assert_allclose(a.epoch_loss, b.epoch_loss, rtol=0, atol=atol)
    for state_a, state_b in zip(a.state_dicts, b.state_dicts, strict=True):
        assert state_a.keys() == state_b.keys()
        for name in state_a:
            torch.testing.assert_close(state_a[name], state_b[name], atol=atol, rtol=0)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_ensemble_matches_one_by_one(digits, arch):
    masks = subset_masks([400] * 3)  # float64 grouped convolutions run on a slow path: keep it small
    config = replace(EXACT, model=arch, schedule="cosine")
    ensemble = train(train_ensemble, digits, masks, config)
    assert ensemble.correct["test"].shape == ensemble.true_prob["test"].shape == (3, 597)
    assert ensemble.epoch_loss.shape == (3, 2)
    assert ensemble.true_prob["test"].dtype == np.float32
    assert ensemble.epoch_loss.dtype == np.float64  # summed in float64 too (float32 sums differ on a GPU by 1e-7)
    assert_same_models(ensemble, train(train_one_by_one, digits, masks, config))


def test_label_smoothing_trains_other_models_the_same_way_batched_and_one_by_one(digits):
    masks = subset_masks([400] * 2)
    smoothed = replace(EXACT, label_smoothing=0.2)
    ensemble = train(train_ensemble, digits, masks, smoothed)
    assert_same_models(ensemble, train(train_one_by_one, digits, masks, smoothed))
    plain = train(train_ensemble, digits, masks, EXACT)
    # the setting reaches the loss: other models, far beyond the float64 tolerance
    assert np.abs(ensemble.true_prob["test"] - plain.true_prob["test"]).max() > 1e-3


def test_the_equivalence_check_catches_a_model_on_another_subset_or_a_wrong_gradient(digits):
    """Negative controls: the float64 tolerance is tight enough to see real bugs."""
    masks = subset_masks([800] * 3)
    config = EXACT
    ensemble = train(train_ensemble, digits, masks, config)
    with pytest.raises(AssertionError):  # models 0 and 1 see each other's data
        assert_same_models(ensemble, train(train_one_by_one, digits, masks[[1, 0, 2]], config))
    with pytest.raises(AssertionError):  # every gradient step 0.1% too long
        assert_same_models(ensemble, train(train_ensemble, digits, masks, replace(config, lr=config.lr * 1.001)))


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_float32_ensemble_agrees_with_one_by_one_on_what_the_estimators_use(digits, arch):
    """In float32, batched and plain kernels round differently (and differently on each CPU),
    and a near-tie in a max-pool window or an argmax can flip: compare what mem/infl consume.
    Measured on AMD Zen 4: 100% agreement, mean |dp| < 1e-7; the two models trained on each
    other's subsets agree on 68% (mlp) / 88% (cnn) with mean |dp| 0.025 / 0.10."""
    masks = subset_masks([400] * 2)
    config = replace(SMALL, model=arch)
    ensemble = train(train_ensemble, digits, masks, config)
    assert_similar_predictions(ensemble, train(train_one_by_one, digits, masks, config), 0.995, 1e-3)
    with pytest.raises(AssertionError):
        assert_similar_predictions(ensemble, train(train_one_by_one, digits, masks[[1, 0]], config), 0.995, 1e-3)


def assert_similar_predictions(a: EnsembleResult, b: EnsembleResult, agreement: float, mean_dp: float):
    """What the estimators consume agrees: correctness on at least ``agreement`` of the
    (model, example) pairs, true-label probabilities within ``mean_dp`` on average."""
    assert (a.correct["test"] == b.correct["test"]).mean() >= agreement
    assert np.abs(a.true_prob["test"] - b.true_prob["test"]).mean() < mean_dp


# bf16 products keep 8 bits of mantissa, so batched and plain runs (different kernels) drift
# apart: measured on AMD Zen 4 (cnn, 2 epochs, 400 examples), 99.2% agreement and mean |dp|
# 0.007; the two models trained on each other's subsets agree on 88% with mean |dp| 0.11.
BF16_AGREEMENT, BF16_MEAN_DP = 0.97, 0.03


def test_bf16_autocast_trains_independent_models_on_cpu(digits):
    masks = subset_masks([400] * 2)
    config = replace(SMALL, model="cnn", precision="bf16")
    ensemble = train(train_ensemble, digits, masks, config)
    assert ensemble.true_prob["test"].dtype == np.float32
    assert_similar_predictions(ensemble, train(train_one_by_one, digits, masks, config), BF16_AGREEMENT, BF16_MEAN_DP)
    with pytest.raises(AssertionError):  # the check sees a model trained on another's subset
        assert_similar_predictions(
            ensemble, train(train_one_by_one, digits, masks[[1, 0]], config), BF16_AGREEMENT, BF16_MEAN_DP
        )
    fp32 = train(train_ensemble, digits, masks, replace(config, precision="fp32"))
    assert not np.array_equal(fp32.true_prob["test"], ensemble.true_prob["test"])  # bf16 really ran


def test_bf16_memorization_estimates_stay_close_to_fp32(digits):
    """The estimates, not the bits: mem from bf16-trained models differs from fp32's only
    where a prediction flipped (measured on AMD Zen 4: mean |dmem| 0.0014); a mem estimate's
    own standard error with 12 models (``memorization``'s mem_se) is 0.21 on average here."""
    images, labels, _ = digits
    masks = subset_masks([600] * 12)
    config = TrainConfig(hidden_sizes=(32,), epochs=4, batch_size=64, lr=0.05, schedule="linear", device="cpu")
    mems = [
        memorization(masks, train_ensemble(images, labels, masks, np.arange(12), replace(config, precision=p), 10,
                                           {"train": (images, labels)}).correct["train"])["mem"]
        for p in ("fp32", "bf16")
    ]
    assert np.nanmean(np.abs(mems[0] - mems[1])) < 0.03


def test_compiled_network_trains_the_same_models_on_cpu(digits):
    """torch.compile (inductor, C++ on CPU) fuses kernels, so results match to float32
    rounding only. Costs ~25 s of compilation on 2 cores, the price of exercising it here."""
    masks = subset_masks([600] * 2)
    config = replace(SMALL, epochs=1, keep_models=False)
    compiled = train(train_ensemble, digits, masks, replace(config, compile=True))
    assert_similar_predictions(compiled, train(train_ensemble, digits, masks, config), 0.995, 1e-3)


def test_models_depend_only_on_seed_and_model_id(digits):
    masks = subset_masks([700] * 5)
    ids = np.array([3, 17, 4, 8, 99])
    config = replace(EXACT, models_in_memory=5)
    together = train(train_ensemble, digits, masks, config, ids)
    in_pairs = train(train_ensemble, digits, masks, replace(config, models_in_memory=2), ids)
    assert_same_models(together, in_pairs)
    alone = train(train_ensemble, digits, masks[3:4], config, ids[3:4])
    np.testing.assert_allclose(alone.true_prob["test"], together.true_prob["test"][3:4], rtol=0, atol=FP64_ATOL)
    other_seed = train(train_ensemble, digits, masks, replace(config, seed=1), ids)
    assert not np.allclose(other_seed.true_prob["test"], together.true_prob["test"])


def test_mixed_subset_sizes_keep_row_order(digits):
    masks = subset_masks([900, 600, 900, 1199, 600])
    ensemble = train(train_ensemble, digits, masks, EXACT)
    assert ensemble.epoch_loss.shape == (5, 2)
    assert_same_models(ensemble, train(train_one_by_one, digits, masks, EXACT))
    for row in (1, 3):  # groups are trained by size, results come back in row order
        alone = train(train_ensemble, digits, masks[[row]], EXACT, np.array([row]))
        np.testing.assert_allclose(alone.true_prob["test"][0], ensemble.true_prob["test"][row], rtol=0, atol=FP64_ATOL)


def test_progress_and_log_per_shard(digits, caplog):
    calls = []
    with caplog.at_level(logging.INFO, logger="longtail.nets.ensemble"):
        train(train_ensemble, digits, subset_masks([500] * 3 + [400]), replace(SMALL, epochs=1, models_in_memory=2),
              progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (3, 4), (4, 4)]
    assert len([r for r in caplog.records if "models/s" in r.getMessage()]) == 3


def test_state_dicts_load_into_plain_models(digits):
    result = train(train_ensemble, digits, subset_masks([300] * 2), replace(SMALL, model="cnn", epochs=1))
    model = build_model("cnn", (1, 8, 8), 10)
    model.load_state_dict(result.state_dicts[1])
    assert not torch.equal(model[0][0].weight, result.state_dicts[0]["0.0.weight"])


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_margins_are_the_kept_models_true_logit_over_their_best_other(digits, arch):
    """The margins equal what each model, rebuilt from its state dict as a plain network, computes
    on the standardised test images; the model is right exactly where its margin is positive."""
    images, labels, eval_sets = digits
    result = train(train_ensemble, digits, subset_masks([300] * 2), replace(EXACT, model=arch, epochs=1))
    train_images = torch.as_tensor(images, dtype=torch.float64)
    mean, std = train_images.mean((0, 2, 3), keepdim=True), train_images.std((0, 2, 3), keepdim=True)
    test_images, test_labels = eval_sets["test"]
    x = (torch.as_tensor(test_images, dtype=torch.float64) - mean) / std
    for k, state in enumerate(result.state_dicts):
        model = build_model(arch, (1, 8, 8), 10, EXACT.hidden_sizes).double()
        model.load_state_dict(state)
        with torch.no_grad():
            logits = model.eval()(x).numpy()
        true = logits[np.arange(len(test_labels)), test_labels]
        others = np.where(np.arange(10) == test_labels[:, None], -np.inf, logits).max(1)
        np.testing.assert_allclose(result.margin["test"][k], true - others, rtol=1e-6, atol=1e-6)
    assert result.margin["test"].dtype == np.float32
    np.testing.assert_array_equal(result.margin["test"] > 0, result.correct["test"])


def test_mlp_ensemble_learns_digits(digits):
    config = TrainConfig(hidden_sizes=(128,), epochs=8, batch_size=64, lr=0.05, schedule="linear", device="cpu")
    result = train(train_ensemble, digits, subset_masks([840] * 3), config)
    assert result.correct["test"].mean(1).min() > 0.9
    assert (result.epoch_loss[:, -1] < result.epoch_loss[:, 0] / 5).all()


def test_lr_schedules():
    config = TrainConfig(lr=0.2)
    assert lr_at(config, 7, 10) == 0.2
    assert lr_at(replace(config, schedule="cosine"), 5, 10) == pytest.approx(0.1)
    assert lr_at(replace(config, schedule="linear"), 0, 10) == 0.2
    assert lr_at(replace(config, schedule="linear"), 9, 10) == pytest.approx(0.02)


def test_crop_and_flip():
    images = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    centre = torch.full((2, 2), PAD)
    torch.testing.assert_close(crop_and_flip(images, centre, torch.tensor([False, True])),
                               torch.stack([images[0], images[1].flip(-1)]))
    shifted = crop_and_flip(images, torch.tensor([[PAD + 1, PAD - 2]] * 2), torch.tensor([False, False]))
    torch.testing.assert_close(shifted[:, :, :-1, 2:], images[:, :, 1:, :-2])
    assert (shifted[:, :, -1] == 0).all() and (shifted[:, :, :, :2] == 0).all()


def test_augmented_ensemble_matches_one_by_one():
    rng = np.random.default_rng(0)
    images, labels = rng.random((64, 3, 32, 32), dtype=np.float32), rng.integers(0, 4, 64)
    masks = subset_masks([40] * 2, n=64)
    config = replace(EXACT, model="cnn", epochs=1, batch_size=16, augment=True)
    runs = [f(images, labels, masks, np.arange(2), config, 4, {"train": (images, labels)})
            for f in (train_ensemble, train_one_by_one)]
    np.testing.assert_allclose(runs[0].true_prob["train"], runs[1].true_prob["train"], rtol=0, atol=FP64_ATOL)


def test_invalid_inputs(digits):
    with pytest.raises(ValueError, match="'vgg'"):
        TrainConfig(model="vgg")
    with pytest.raises(ValueError, match="'step'"):
        TrainConfig(schedule="step")
    masks = subset_masks([10, 0])
    with pytest.raises(ValueError, match="non-empty"):
        train(train_ensemble, digits, masks, SMALL)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_recording_epochs_changes_no_model_and_ends_with_the_final_evaluation(digits, arch):
    masks = subset_masks([400, 300, 400])  # two shards' sizes: recorded epochs follow the input rows
    config = replace(EXACT, model=arch)
    plain = train(train_ensemble, digits, masks, config)
    recorded = train(train_ensemble, digits, masks, replace(config, record_epochs=True))
    assert plain.epoch_correct is None and plain.epoch_true_prob is None
    assert_same_models(plain, recorded)  # BatchNorm statistics untouched by evaluation in eval mode
    assert recorded.epoch_correct["test"].shape == recorded.epoch_true_prob["test"].shape == (3, SMALL.epochs, 597)
    np.testing.assert_array_equal(recorded.epoch_correct["test"][:, -1], recorded.correct["test"])
    np.testing.assert_array_equal(recorded.epoch_true_prob["test"][:, -1], recorded.true_prob["test"])
    one_by_one = train(train_one_by_one, digits, masks, replace(config, record_epochs=True))
    np.testing.assert_allclose(one_by_one.epoch_true_prob["test"], recorded.epoch_true_prob["test"], rtol=0, atol=FP64_ATOL)


def test_the_training_split_goes_onto_the_device_once_when_it_is_also_evaluated(digits):
    images, labels, eval_sets = digits
    data = prepare_data(images, labels, {"train": (images, labels), **eval_sets}, 10, torch.device("cpu"), torch.float32)
    assert data.eval_sets["train"][0] is data.images and data.eval_sets["train"][1] is data.labels
    test_images = data.eval_sets["test"][0]
    assert test_images.data_ptr() != data.images.data_ptr()
    mean, std = images.mean((0, 2, 3), keepdims=True), images.std((0, 2, 3), keepdims=True, ddof=1)
    np.testing.assert_allclose(test_images.numpy(), (eval_sets["test"][0] - mean) / std, atol=1e-5)  # same standardisation


def test_the_shard_planner_counts_float64_weights_at_eight_bytes():
    """An fp64 model holds twice the bytes of an fp32 one, so an auto-sized shard holds half
    as many models (the planner once counted 4 bytes whatever the precision)."""
    config = TrainConfig(hidden_sizes=(512, 256), device="cpu")
    fp64 = replace(config, precision="fp64")
    assert bytes_per_model(fp64, (1, 28, 28), 10) == 2 * bytes_per_model(config, (1, 28, 28), 10)
    per_shard = models_in_memory(fp64, torch.device("cpu"), (1, 28, 28), 10)
    assert per_shard * bytes_per_model(fp64, (1, 28, 28), 10) <= CPU_SHARD_BYTES


def test_tf32_is_refused_off_cuda_before_anything_trains(digits) -> None:
    images, labels, eval_sets = digits
    with pytest.raises(ValueError, match=r"precision='tf32': tf32 runs on CUDA devices only, not on 'cpu'; use fp32 or bf16"):
        train_ensemble(images, labels, np.ones((1, len(labels)), bool), np.arange(1), replace(SMALL, precision="tf32", device="cpu"),
                       10, eval_sets)


def test_tf32_matmuls_hold_only_inside_and_restore_the_process_setting() -> None:
    """The process-wide cuBLAS setting is tf32 inside, and what it was after, also when the
    training raises; switched off, the context changes nothing."""
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    with tf32_matmuls(True):
        assert matmul.fp32_precision == "tf32"
    assert matmul.fp32_precision == before
    with pytest.raises(RuntimeError, match="boom"), tf32_matmuls(True):
        raise RuntimeError("boom")
    assert matmul.fp32_precision == before
    with tf32_matmuls(False):
        assert matmul.fp32_precision == before


def test_an_empty_range_of_epochs_trains_nothing(digits) -> None:
    """fit's ``epochs`` are the epochs it runs: an empty range (benchmarks/noise.py with --last
    equal to the epoch count) runs none; it once counted as "not given" and ran every epoch."""
    images, labels, _ = digits
    data = prepare_data(images, labels, {}, 10, torch.device("cpu"), SMALL.dtype)
    subsets = np.stack([np.flatnonzero(m) for m in subset_masks([400] * 2)])

    def fitted(epochs: range) -> tuple[list[torch.Tensor], list[torch.Tensor], np.ndarray]:
        net = StackedModels([init_model(SMALL, i, data.input_shape, 10) for i in range(2)])
        before = [p.detach().clone() for p in net.parameters()]
        streams = DataStreams(subsets, [model_seeds(SMALL.seed, i)[1] for i in range(2)], None)
        losses = fit(net, streams, data, Recipe(SMALL), epochs=epochs)
        return before, [p.detach() for p in net.parameters()], losses

    before, after, losses = fitted(range(0))
    assert all(torch.equal(a, b) for a, b in zip(before, after)) and not losses.any()
    before, after, losses = fitted(range(1, 2))  # the control: one epoch moves every model and logs its loss
    assert not any(torch.equal(a, b) for a, b in zip(before, after))
    assert not losses[:, 0].any() and losses[:, 1].all()


def test_calls_in_two_threads_train_one_after_the_other_each_with_its_own_threads(digits) -> None:
    """Two threads of one process train at once (Kedro's ThreadRunner, a Dask worker with two
    threads), with 1 and 2 CPU threads. Training sets torch's process-wide thread count: each
    call holds the process for its whole run, so its progress reports never interleave with
    the other's and always see its own thread count."""
    import threading  # noqa: PLC0415

    seen: list[tuple[int, int]] = []
    start = threading.Barrier(2)

    def run(threads: int) -> None:
        start.wait()
        config = replace(SMALL, threads=threads, models_in_memory=1)
        train(train_ensemble, digits, subset_masks([400] * 8), config, progress=lambda done, total: seen.append((threads, torch.get_num_threads())))

    workers = [threading.Thread(target=run, args=(threads,)) for threads in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [own for own, _ in seen] in ([1] * 8 + [2] * 8, [2] * 8 + [1] * 8)
    assert all(own == current for own, current in seen)
