"""ShuffledPointwiseConv: a grouped 1x1 conv of channel-shuffled parts."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from saevit_mm.models.layers.shuffled_conv import (ShuffledPointwiseConv,
                                                   channel_shuffle)
from saevit_mm.models.utils import count_complexity


class _OpNames(TorchDispatchMode):

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _conv(width, groups, out, bias):
    torch.manual_seed(0)
    conv = ShuffledPointwiseConv(width * groups, out, groups, bias=bias)
    return conv.double()


@pytest.mark.parametrize('width,groups', [(8, 4), (12, 3), (6, 4)],
                         ids=['8/4', '12/3', '6/4-shuffled-copy'])
@pytest.mark.parametrize('channels_last', [False, True], ids=['NCHW', 'NHWC'])
@pytest.mark.parametrize('bias', [False, True], ids=['no-bias', 'bias'])
def test_parts_give_the_grouped_conv_of_their_shuffle(width, groups,
                                                      channels_last, bias):
    conv = _conv(width, groups, 4 * groups, bias)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    parts = [
        torch.randn(2, width, 5, 7, dtype=torch.float64).contiguous(
            memory_format=fmt).requires_grad_() for _ in range(groups)
    ]
    out = conv(parts)
    expected = F.conv2d(channel_shuffle(parts), conv.weight, conv.bias,
                        groups=groups)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(conv(channel_shuffle(parts)), expected)
    grads = torch.autograd.grad(out.square().sum(),
                                [conv.weight, *parts])
    expected_grads = torch.autograd.grad(expected.square().sum(),
                                         [conv.weight, *parts])
    for grad, want in zip(grads, expected_grads):
        torch.testing.assert_close(grad, want)


def test_needs_one_part_per_group():
    conv = _conv(8, 4, 16, bias=False)
    parts = [torch.randn(1, 16, 3, 3, dtype=torch.float64)] * 2
    with pytest.raises(ValueError, match='groups=4 reads the shuffle of 4 '
                       'maps, but got 2'):
        conv(parts)


def test_no_shuffled_copy_and_no_grouped_conv():
    conv = _conv(8, 4, 16, bias=True)
    parts = [torch.randn(2, 8, 5, 7, dtype=torch.float64) for _ in range(4)]
    with _OpNames() as ops:
        conv(parts)
    assert not {'convolution', 'cat', 'stack'} & set(ops.names), ops.names


def test_flops_are_the_grouped_conv_flops():
    """mmengine's counter gives the chunked products the grouped
    convolution's multiply-adds, at any batch size."""

    class Parts(nn.Module):

        def __init__(self, conv, shuffled):
            super().__init__()
            self.conv, self.shuffled = conv, shuffled

        def forward(self, x):
            parts = list(x.chunk(4, dim=1))
            return self.conv(channel_shuffle(parts) if self.shuffled else
                             parts)

    conv = _conv(8, 4, 16, bias=False).float()
    for batch in (1, 3):
        counts = [
            count_complexity(Parts(conv, shuffled), (32, 5, 7),
                             batch_size=batch)['flops']
            for shuffled in (False, True)
        ]
        assert counts[0] == counts[1] == batch * 35 * 16 * 8, counts


@pytest.mark.parametrize('widths', [(3, 5, 4, 4), (2, 2, 2, 2)])
def test_parts_of_another_width_are_refused(widths):
    """Four maps whose widths are unequal, or sum to other than
    ``in_channels``: a ValueError that names the shapes."""
    conv = ShuffledPointwiseConv(16, 8, 4)
    parts = [torch.randn(1, w, 4, 4) for w in widths]
    with pytest.raises(ValueError, match='reads 4 maps of one shape'):
        conv(parts)
