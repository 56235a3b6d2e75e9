"""Channel-Interactive FFN and the plain FFN of the ablation."""
import pytest
import torch
from torch import nn

from saevit_mm.models.layers import CIFFN, ConvFFN


def test_ciffn_shape_and_groups():
    ffn = CIFFN(16, ffn_ratio=3, kernel_sizes=(3, 5, 7, 9)).eval()
    assert ffn(torch.randn(2, 16, 7, 5)).shape == (2, 16, 7, 5)
    assert ffn.expand.conv.out_channels == 48
    for conv, k in zip(ffn.dwconvs, (3, 5, 7, 9)):
        assert conv.conv.kernel_size == (k, k)
        assert conv.conv.groups == conv.conv.in_channels == 12


def test_ciffn_decomposes_then_shuffles():
    """The activation sees the ShuffleNet shuffle of the group outputs."""
    ffn = CIFFN(8, ffn_ratio=3, kernel_sizes=(3, 5, 7)).eval()
    seen = []
    ffn.act.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    x = torch.randn(2, 8, 6, 7)
    ffn(x)
    parts = ffn.expand(x).chunk(3, dim=1)
    grouped = torch.cat([conv(p) for conv, p in zip(ffn.dwconvs, parts)], 1)
    shuffled = grouped.reshape(2, 3, 8, 6, 7).transpose(1, 2).reshape(
        2, 24, 6, 7)
    torch.testing.assert_close(seen[0], shuffled)
    # every run of 3 consecutive channels holds one channel of each group
    for j in range(3):
        torch.testing.assert_close(seen[0][:, j::3], grouped[:, 8 * j:8 *
                                                             (j + 1)])


def test_ciffn_output_mixes_all_groups():
    ffn = CIFFN(8, ffn_ratio=2, kernel_sizes=(3, 5)).eval()
    seen = []
    ffn.dwconvs[1].register_forward_hook(lambda m, i, o: seen.append(o))
    x = torch.randn(1, 8, 5, 5)
    out = ffn(x)
    grad, = torch.autograd.grad(out[:, 0].sum(), seen[0])
    assert grad.abs().sum() > 0  # group 1 reaches output channel 0


@pytest.mark.parametrize('ratio,kernels,message', [
    (1.5, (3, 5, 7, 9), r'int\(6 \* 1.5\) = 9 must be a positive multiple'),
    (2, (3, 4), 'odd positive ints'),
    (2, (), 'non-empty'),
])
def test_ciffn_bad_arguments(ratio, kernels, message):
    with pytest.raises(ValueError, match=message):
        CIFFN(6, ffn_ratio=ratio, kernel_sizes=kernels)


def test_plain_ffn():
    ffn = ConvFFN(8, ffn_ratio=3).eval()
    assert ffn(torch.randn(2, 8, 5, 4)).shape == (2, 8, 5, 4)
    assert [type(m) for m in ffn.modules() if isinstance(m, nn.Conv2d)] \
        == [nn.Conv2d, nn.Conv2d]
    assert ffn.expand.conv.kernel_size == (1, 1)
    with pytest.raises(ValueError, match='must be positive'):
        ConvFFN(2, ffn_ratio=0.1)
