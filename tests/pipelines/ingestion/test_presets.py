"""The presets (conf/<env>) merged onto conf/base as `kedro run --env <env>` merges them."""

from __future__ import annotations

import pytest
from kedro.config import OmegaConfigLoader

from longtail.params import StudyParams, validate_parameters
from longtail.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT

# env: (dataset, model, n_models, augment)
PRESETS = {
    "mnist": ("mnist", "mlp", 2000, False),
    "fashion_mnist": ("fashion_mnist", "mlp", 2000, False),
    "cifar10": ("cifar10", "airbench94", 2000, True),
    "cifar100": ("cifar100", "airbench94", 4000, True),
}


def preset(env: str) -> StudyParams:
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)
    return validate_parameters(loader["parameters"])


@pytest.mark.parametrize("env", list(PRESETS))
def test_each_preset_is_valid_and_downloads_its_dataset(env: str) -> None:
    study = preset(env)
    assert (study.dataset.name, study.training.model, study.sampling.n_models, study.training.augment) == PRESETS[env]
    assert study.dataset.download and study.training.device == "auto"
    assert study.sampling.subset_ratio == 0.7
    assert study.dataset.seed == 0 and study.scoring.influence_threshold == 0.15  # the rest comes from conf/base


def test_the_mnist_preset_is_the_papers_demo() -> None:
    training = preset("mnist").training
    assert (training.hidden_sizes, training.epochs, training.batch_size) == ((512, 256), 10, 128)
    assert (training.lr, training.momentum) == (0.1, 0.9)


@pytest.mark.parametrize("env", ["cifar10", "cifar100"])
def test_the_cifar_presets_train_airbench94_with_its_recipe(env: str) -> None:
    training = preset(env).training
    assert (training.epochs, training.batch_size, training.lr, training.momentum) == (16, 1024, 11.5, 0.85)
    assert (training.weight_decay, training.label_smoothing, training.schedule) == (0.0153, 0.2, "triangular")
    assert training.tta == "mirror_translate"
