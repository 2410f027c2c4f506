import pytest
import torch
from torch import nn

import nbkit
from nbkit.models import VGG_PLANS, build, count_weights, names


@pytest.mark.parametrize("name", names())
def test_every_model_builds_and_runs(name):
    model = build(name, num_classes=7)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    assert model.input_shape == (3, 32, 32)


def test_vgg16_bn_has_the_papers_weight_count():
    assert count_weights(build("vgg16_bn", num_classes=10)) == 14_715_584
    assert count_weights(build("vgg16_bn", num_classes=100)) == 14_761_664


def _vgg_weights(plan, num_classes):
    total, c = 0, 3
    for item in plan:
        if item != "M":
            total += c * item * 9
            c = item
    return total + c * num_classes


def _resnet_weights(depth, base, num_classes):
    n = (depth - 2) // 6
    total, c = 3 * base * 9, base
    for width in (base, 2 * base, 4 * base):
        for _ in range(n):
            total += c * width * 9 + width * width * 9
            if c != width:
                total += c * width  # 1x1 projection shortcut
            c = width
    return total + c * num_classes


@pytest.mark.parametrize("plan", sorted(VGG_PLANS))
def test_vgg_counts_match_the_plan(plan):
    for suffix in ("", "_bn"):
        assert count_weights(build(plan + suffix, num_classes=10)) == _vgg_weights(
            VGG_PLANS[plan], 10)


@pytest.mark.parametrize("k", [2, 8])
def test_narrow_vgg_divides_every_width(k):
    narrow = [c if c == "M" else c // k for c in VGG_PLANS["vgg16"]]
    model = build("vgg16_bn", width_divisor=k)
    assert count_weights(model) == _vgg_weights(narrow, 10)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="whole number"):
        build("vgg16_bn", width_divisor=0.5)


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_resnet_counts_match_the_architecture(depth):
    assert count_weights(build(f"resnet{depth}")) == _resnet_weights(depth, 16, 10)
    assert _resnet_weights(20, 16, 10) == 270_896


@pytest.mark.parametrize("depth", [20, 32])
def test_wide_resnet_counts(depth):
    assert count_weights(build(f"wide_resnet{depth}")) == _resnet_weights(depth, 32, 10)


def test_resnet_structure_follows_the_paper():
    model = build("resnet20")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs)
    shortcuts = [c for c in convs if c.kernel_size == (1, 1)]
    assert len(shortcuts) == 2 and all(c.stride == (2, 2) for c in shortcuts)


def test_initialisation_is_the_papers():
    model = build("vgg16_bn")
    conv = model.layers[0].conv
    assert torch.all(conv.bias == 0)
    # Kaiming normal, fan-in, ReLU gain: std = sqrt(2 / fan_in)
    expected = (2 / (3 * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.15)
    big = model.layers[-1].conv.weight
    assert big.std().item() == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.02)
    bn = model.layers[0].bn
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_parameter_names_match_the_reference_layout():
    keys = [k for k, p in build("vgg16_bn").named_parameters() if p.dim() > 1]
    assert keys[0] == "layers.0.conv.weight" and keys[-1] == "fc.weight"
    assert "layers.14.conv.weight" in keys and len(keys) == 14


def test_small_nets_take_options():
    mlp = build("mlp", depth=4, width=32, bias=False, input_shape=(1, 8, 8))
    assert [m.in_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [64, 32, 32, 32]
    assert all(m.bias is None for m in mlp.modules() if isinstance(m, nn.Linear))
    conv = build("conv", depth=3, width=8, pool="avg", batchnorm=False, activation="tanh")
    assert any(isinstance(m, nn.AvgPool2d) for m in conv.modules())
    assert any(isinstance(m, nn.Tanh) for m in conv.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in conv.modules())


def test_other_input_shapes_and_classes():
    model = build("resnet20", num_classes=100, input_shape=(1, 28, 28))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 100)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="valid names are: .*vgg16_bn"):
        build("vgg17")


def test_bad_model_options():
    with pytest.raises(ValueError, match="takes only \\['width_divisor'\\]"):
        build("vgg16", depth=3)
    with pytest.raises(ValueError, match="takes only \\['width_divisor'\\]"):
        build("resnet20", depth=3)
    with pytest.raises(ValueError, match="takes no options"):
        build("resnet18", width_divisor=2)
    with pytest.raises(ValueError, match="input_shape"):
        build("mlp", input_shape=(32, 32))
    with pytest.raises(ValueError, match="activation"):
        build("mlp", activation="swish")


def test_seed_makes_builds_repeatable():
    nbkit.seed(3)
    a = build("conv").state_dict()
    nbkit.seed(3)
    b = build("conv").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
