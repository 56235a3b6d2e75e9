"""normalize_out_indices, check_frozen_stages, freeze_module, set_norm_eval."""
import pytest
import torch
from torch import nn

from saevit_mm.models.utils import (check_frozen_stages, freeze_module,
                                    normalize_out_indices, set_norm_eval)


@pytest.mark.parametrize('given,stages,expected', [
    (3, 4, (3, )),
    (-1, 4, (3, )),
    ([2, 0], 4, (0, 2)),
    ((-4, -1), 4, (0, 3)),
    ((0, 1, 2), 3, (0, 1, 2)),
    (-1, 6, (5, )),
])
def test_normalize_out_indices(given, stages, expected):
    original = list(given) if isinstance(given, list) else given
    assert normalize_out_indices(given, stages) == expected
    assert given == original  # not mutated


@pytest.mark.parametrize('given,error,message', [
    (4, ValueError, r'allowed indices are -4\.\.3'),
    ((0, -5), ValueError, r'has -5, which is out of range'),
    ((), ValueError, 'at least one'),
    ((0, -4), ValueError, 'same stage twice'),
    ('01', TypeError, 'int or a sequence'),
    (True, TypeError, 'int or a sequence'),
])
def test_normalize_out_indices_errors(given, error, message):
    with pytest.raises(error, match=message):
        normalize_out_indices(given, 4)


def test_check_frozen_stages():
    assert [check_frozen_stages(k, 4) for k in range(-1, 5)] == list(
        range(-1, 5))
    for bad in (-2, 5, 2.0, None):
        with pytest.raises(ValueError, match=r'in -1\.\.4'):
            check_frozen_stages(bad, 4)


def test_freeze_module_and_set_norm_eval():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.GroupNorm(2, 4),
        nn.Dropout())
    freeze_module(net[0])
    assert not net[0].training and not net[0].weight.requires_grad
    bn = net[1]
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    stats = [b.clone() for b in bn.buffers()]
    net.train()
    set_norm_eval(net)
    assert [m.training for m in net] == [True, False, False, True]
    assert bn.weight.requires_grad
    # a training step keeps the running statistics and normalises with them
    x = torch.randn(2, 3, 6, 6)
    out = net[:2](x)
    for before, after in zip(stats, bn.buffers(), strict=True):
        assert torch.equal(before, after)
    expected = (net[0](x) - stats[0][:, None, None]) / torch.sqrt(
        stats[1][:, None, None] + bn.eps) * bn.weight[:, None, None] \
        + bn.bias[:, None, None]
    torch.testing.assert_close(out, expected)
