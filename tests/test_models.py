import pytest
import torch

from landscape_utils.core.models import build_model, count_parameters


@pytest.mark.parametrize("name,in_shape", [("mlp", (40,)), ("cnn", (40,)), ("cnn", (1, 8, 8)),
                                           ("mlp", (3, 8, 8)), ("resnet18", (3, 16, 16))])
@pytest.mark.parametrize("bn", [False, True])
def test_shapes(name, in_shape, bn):
    model = build_model(name, 4, in_shape, 7, batch_norm=bn)
    out = model(torch.randn(5, *in_shape))
    assert out.shape == (5, 7)
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert has_bn == bn


def test_mlp_parameter_count_by_hand():
    w, d_in, k = 16, 40, 10
    expected = (d_in * w + w) + (w * w + w) + (w * k + k)
    assert count_parameters(build_model("mlp", w, (d_in,), k)) == expected
    # BatchNorm adds a weight and a bias per hidden unit
    assert count_parameters(build_model("mlp", w, (d_in,), k, batch_norm=True)) == expected + 2 * 2 * w


def test_resnet18_width_64_is_the_standard_resnet18():
    # The CIFAR ResNet18 (bias-free convs + BatchNorm) has 11,173,962 parameters.
    model = build_model("resnet18", 64, (3, 32, 32), 10, batch_norm=True)
    assert count_parameters(model) == 11_173_962


def test_resnet18_stage_widths():
    model = build_model("resnet18", 3, (3, 32, 32), 10, batch_norm=True)
    outs = [stage[-1].conv2.out_channels for stage in model.layers]
    assert model.conv1.out_channels == 3 and outs == [3, 6, 12, 24]


@pytest.mark.parametrize("kwargs,match", [({"name": "vgg"}, "unknown model 'vgg'"),
                                          ({"width": 0}, "width must be a positive"),
                                          ({"width": -3}, "width must be a positive")])
def test_bad_model_arguments(kwargs, match):
    args = {"name": "mlp", "width": 8, "in_shape": (40,), "num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_model(**args)
