"""DWSConv, the stem and the downsampling layers."""
import math

import pytest
import torch

from saevit_mm.models.layers import ConvStem, Downsample, DWSConv


def test_dwsconv_is_depthwise_then_pointwise():
    layer = DWSConv(8).eval()
    assert layer.dw.conv.groups == 8 and layer.dw.conv.kernel_size == (3, 3)
    assert layer.pw.conv.kernel_size == (1, 1)
    x = torch.randn(2, 8, 7, 9, requires_grad=True)
    out = layer(x)
    assert out.shape == x.shape
    # one output pixel depends on the 3x3 window around it, all channels
    grad, = torch.autograd.grad(out[0, 0, 3, 4], x)
    nonzero = grad[0].abs().sum(0).nonzero().tolist()
    assert {tuple(p) for p in nonzero} == {(i, j)
                                           for i in range(2, 5)
                                           for j in range(3, 6)}
    assert (grad[0].abs().sum((1, 2)) > 0).all()


@pytest.mark.parametrize('kernel_size', [1, 5, 7])
def test_dwsconv_odd_kernels_keep_the_size(kernel_size):
    layer = DWSConv(8, kernel_size=kernel_size).eval()
    assert layer.dw.conv.kernel_size == (kernel_size, kernel_size)
    x = torch.randn(1, 8, 6, 9)
    assert layer(x).shape == x.shape


@pytest.mark.parametrize('kernel_size', [2, 4, 0, -3, 3.0, True], ids=str)
def test_dwsconv_rejects_kernels_that_change_the_size(kernel_size):
    """An even kernel would shift the map by one pixel and break the
    block's residual add; refuse it when the layer is built."""
    with pytest.raises(
            ValueError,
            match=r'DWSConv kernel_size must be an odd positive int.*but '
            f'got {kernel_size!r}'):
        DWSConv(8, kernel_size=kernel_size)


@pytest.mark.parametrize('size', [(1, 1), (32, 32), (97, 131)], ids=str)
def test_stem_and_downsample_round_up(size):
    stem = ConvStem(3, 16).eval()
    down = Downsample(16, 32).eval()
    x = stem(torch.randn(1, 3, *size))
    assert x.shape == (1, 16, math.ceil(size[0] / 4), math.ceil(size[1] / 4))
    assert down(x).shape == (1, 32, math.ceil(x.shape[2] / 2),
                             math.ceil(x.shape[3] / 2))
