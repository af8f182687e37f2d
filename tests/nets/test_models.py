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


def test_airbench94_maps_cifar_images_to_logits_and_refuses_small_images():
    model = build_model("airbench94", (3, 32, 32), n_classes=100)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 100)
    assert model.whiten.weight.shape == (24, 3, 2, 2) and not model.whiten.weight.requires_grad
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6 and not any(m.weight.requires_grad for m in norms)
    first = model.block1[0].weight  # partial identity initialisation: filter i passes channel i through
    assert torch.equal(first[:24, :, 1, 1], torch.eye(24)) and first[:24].abs().sum() == 24
    with pytest.raises(ValueError, match="at least 16x16 pixels, got 8x8"):
        build_model("airbench94", (1, 8, 8), 10)


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
    assert ARCHITECTURES == ("mlp", "cnn", "resnet", "airbench94")
