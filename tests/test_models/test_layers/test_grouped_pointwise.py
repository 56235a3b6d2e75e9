"""GroupedPointwiseConv: a grouped 1x1 conv as one batched product."""
import pytest
import torch
import torch.nn.functional as F

from saevit_mm.models.layers.grouped_pointwise import (GroupedPointwiseConv,
                                                       channel_shuffle)
from saevit_mm.models.utils import count_complexity
from saevit_mm.models.utils.cost import count_aten_ops


def _conv(in_channels, groups, out, bias):
    torch.manual_seed(0)
    return GroupedPointwiseConv(in_channels, out, groups, bias=bias).double()


@pytest.mark.parametrize('in_channels,groups,out', [(32, 4, 16), (36, 3, 6),
                                                    (8, 1, 4)])
@pytest.mark.parametrize('channels_last', [False, True], ids=['NCHW', 'NHWC'])
@pytest.mark.parametrize('bias', [False, True], ids=['no-bias', 'bias'])
def test_is_the_grouped_conv(in_channels, groups, out, channels_last, bias):
    conv = _conv(in_channels, groups, out, bias)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(
        2, in_channels, 5, 7,
        dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
    result = conv(x)
    expected = F.conv2d(x, conv.weight, conv.bias, groups=groups)
    torch.testing.assert_close(result, expected)
    grads = torch.autograd.grad(result.square().sum(), [conv.weight, x])
    expected_grads = torch.autograd.grad(expected.square().sum(),
                                         [conv.weight, x])
    for grad, want in zip(grads, expected_grads):
        torch.testing.assert_close(grad, want)


def test_one_product_no_convolution():
    conv = _conv(32, 4, 16, bias=False)
    x = torch.randn(2, 32, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        ops, _ = count_aten_ops(lambda: conv(x))
    assert ops['bmm'] == 1 and 'convolution' not in ops, ops


def test_flops_are_the_grouped_conv_flops():
    """mmengine's counter gives the product the grouped convolution's
    multiply-adds, at any batch size."""
    conv = _conv(32, 4, 16, bias=False).float()
    for batch in (1, 3):
        flops = count_complexity(conv, (32, 5, 7), batch_size=batch)['flops']
        assert flops == batch * 35 * 16 * 8, flops


def test_wrong_width_is_refused():
    with pytest.raises(ValueError, match='reads an NCHW map of 16 channels'):
        _conv(16, 4, 8, bias=False)(torch.randn(1, 12, 4, 4))


def test_channel_shuffle_interleaves_the_groups():
    parts = [torch.full((1, 3, 2, 2), float(j)) for j in range(4)]
    shuffled = channel_shuffle(parts)
    assert shuffled[0, :, 0, 0].tolist() == [0, 1, 2, 3] * 3
