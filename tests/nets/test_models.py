import pytest
import torch
from torch import nn

from longtail.nets.models import ARCHITECTURES, build_model

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("input_shape", SHAPES)
def test_small_nets_map_images_to_logits(arch, input_shape):
    model = build_model(arch, input_shape, n_classes=10)
    assert model(torch.rand(2, *input_shape)).shape == (2, 10)


def test_resnet_maps_cifar_images_to_logits():
    model = build_model("resnet", (3, 32, 32), n_classes=100)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 100)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_mlp_is_the_papers_mnist_net():
    model = build_model("mlp", (1, 28, 28), n_classes=10)
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(784, 512), (512, 256), (256, 10)]


def test_mlp_hidden_sizes():
    model = build_model("mlp", (1, 8, 8), n_classes=3, hidden_sizes=[16])
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [16, 3]


def test_unknown_arch_names_value_and_choices():
    with pytest.raises(ValueError, match="'vgg'.*mlp.*cnn.*resnet"):
        build_model("vgg", (1, 8, 8), 10)
    assert ARCHITECTURES == ("mlp", "cnn", "resnet")
