"""Channel-Interactive FFN and the plain FFN of the ablation."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from saevit_mm.models.layers import CIFFN, ConvFFN


def test_ciffn_shape_and_groups():
    ffn = CIFFN(16, ffn_ratio=3, kernel_sizes=(3, 5, 7, 9)).eval()
    assert ffn(torch.randn(2, 16, 7, 5)).shape == (2, 16, 7, 5)
    assert ffn.expand.conv.out_channels == 48
    for conv, k in zip(ffn.dwconvs, (3, 5, 7, 9)):
        assert conv.kernel_size == (k, k)
        assert conv.groups == conv.in_channels == 12
    assert ffn.dw_norm.num_features == 48  # one norm of the shuffled map


@pytest.mark.parametrize(
    'dims,kernels', [(8, (3, 5, 7, 9)), (6, (3, 5, 7))],
    ids=['chunked', 'shuffled-copy'])
def test_ciffn_decomposes_then_shuffles(dims, kernels):
    """CIFFN is the grouped projection of the activated ShuffleNet shuffle
    of the group outputs, whether the projection reads the parts in chunks
    (groups divide their width: 8 of 4 groups) or from a shuffled copy (8
    of 3 groups)."""
    ffn = _random_weights(CIFFN(dims, ffn_ratio=4, kernel_sizes=kernels))
    ffn = ffn.double().eval()
    g, width = len(kernels), 4 * dims // len(kernels)
    x = torch.randn(2, dims, 6, 7, dtype=torch.float64)
    parts = ffn.expand(x).chunk(g, dim=1)
    grouped = torch.cat([conv(p) for conv, p in zip(ffn.dwconvs, parts)], 1)
    shuffled = grouped.reshape(2, g, width, 6,
                               7).transpose(1, 2).reshape(2, g * width, 6, 7)
    # every run of g consecutive channels holds one channel of each group
    for j in range(g):
        torch.testing.assert_close(shuffled[:, j::g],
                                   grouped[:, width * j:width * (j + 1)])
    expected = ffn.project.norm(
        F.conv2d(
            ffn.act(ffn.dw_norm(shuffled)), ffn.project.conv.weight, groups=g))
    torch.testing.assert_close(ffn(x), expected)


def test_ciffn_output_mixes_all_groups():
    ffn = CIFFN(8, ffn_ratio=2, kernel_sizes=(3, 5)).eval()
    seen = []
    ffn.dwconvs[1].register_forward_hook(lambda m, i, o: seen.append(o))
    x = torch.randn(1, 8, 5, 5)
    out = ffn(x)
    grad, = torch.autograd.grad(out[:, 0].sum(), seen[0])
    assert grad.abs().sum() > 0  # group 1 reaches output channel 0


@pytest.mark.parametrize('ratio,kernels,message', [
    (1.5, (3, 5, 7, 9), r'int\(6 \* 1.5\) = 9 must both be positive'),
    (4, (3, 5, 7, 9), r'embed_dims \(6\) and the hidden width'),
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


def _without_shuffle(ffn, x):
    """``ffn`` with its redistribution replaced by the identity: the group
    outputs stay in group order. Uses only the submodules that every CIFFN
    has, so any re-arrangement of the other weights is a weight change."""
    parts = ffn.expand(x).chunk(ffn.groups, dim=1)
    x = torch.cat([conv(p) for conv, p in zip(ffn.dwconvs, parts)], 1)
    return ffn.project(ffn.act(ffn.dw_norm(x)))


def _sees(forward, ffn, offset, size=19):
    """Per output channel: whether the centre pixel's output depends on the
    input pixel ``offset`` rows and columns away (exact gradient test)."""
    x = torch.randn(
        1,
        ffn.expand[0].in_channels,
        size,
        size,
        dtype=torch.float64,
        requires_grad=True)
    out = forward(ffn, x)
    c = size // 2
    seen = []
    for channel in range(out.shape[1]):
        grad, = torch.autograd.grad(
            out[0, channel, c, c], x, retain_graph=True)
        seen.append(bool(grad[0, :, c + offset, c + offset].abs().sum() > 0))
    return seen


def _random_weights(ffn, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ffn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return ffn


def test_ciffn_redistribution_cannot_be_compensated():
    """With the shuffle, every output channel sees the widest kernel (9x9:
    offset 4). Replaced by the identity, the grouped projection's first
    output group reads only the 3x3 group, whatever the weights: no
    re-arrangement of expansion, kernels or projection gives it the 9x9
    context back (a dense projection would, and would absorb the shuffle
    into its column order)."""
    ffn = _random_weights(CIFFN(8, ffn_ratio=2, kernel_sizes=(3, 5, 7, 9)))
    ffn = ffn.double().eval()
    assert all(_sees(lambda f, x: f(x), ffn, offset=4))
    for seed in range(3):  # any weights, not just these
        other = _random_weights(copy.deepcopy(ffn), seed).eval()
        seen = _sees(_without_shuffle, other, offset=4)
        out_group = 8 // 4
        assert not any(seen[:out_group]), seen  # 3x3 group only
        assert all(seen[-out_group:]), seen  # the 9x9 group


def test_ciffn_ablation_without_redistribution_is_the_identity_shuffle():
    ffn = _random_weights(CIFFN(8, ffn_ratio=2, redistribute=False))
    ffn = ffn.double().eval()
    x = torch.randn(2, 8, 11, 12, dtype=torch.float64)
    torch.testing.assert_close(ffn(x), _without_shuffle(ffn, x))
    shuffled = copy.deepcopy(ffn)
    shuffled.redistribute = True
    assert (shuffled(x) - ffn(x)).abs().max() > 1e-3


def _per_group_state(ffn, seed=0):
    """A random state dict of ``ffn`` in the per-group layout of earlier
    versions: ``dwconvs.<j>.conv.weight`` and ``dwconvs.<j>.norm.*``."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in ffn.state_dict().items():
        if key.startswith('dw_norm.'):
            continue
        if key.startswith('dwconvs.'):
            j = key.split('.')[1]
            key = f'dwconvs.{j}.conv.weight'
            width = value.shape[0]
            for name in ('weight', 'bias', 'running_mean'):
                state[f'dwconvs.{j}.norm.{name}'] = torch.randn(
                    width, generator=gen, dtype=torch.float64)
            state[f'dwconvs.{j}.norm.running_var'] = 1 + torch.rand(
                width, generator=gen, dtype=torch.float64)
            state[f'dwconvs.{j}.norm.num_batches_tracked'] = torch.tensor(7)
        if not value.is_floating_point():
            state[key] = value
        elif key.endswith('running_var'):
            state[key] = 1 + torch.rand(
                value.shape, generator=gen, dtype=torch.float64)
        else:
            state[key] = torch.randn(
                value.shape, generator=gen, dtype=torch.float64)
    return state


@pytest.mark.parametrize(
    'redistribute', [True, False], ids=['shuffled', 'no-redistribution'])
def test_per_group_checkpoints_load_as_the_same_function(redistribute):
    """A checkpoint of the per-group layout (each depth-wise convolution
    with its own BatchNorm) loads into the one-norm layout and computes
    what the per-group layout computed with it."""
    ffn = CIFFN(8, ffn_ratio=2, redistribute=redistribute).double().eval()
    state = _per_group_state(ffn)
    ffn.load_state_dict(dict(state))  # strict: every key found
    assert int(ffn.dw_norm.num_batches_tracked) == 7
    x = torch.randn(2, 8, 9, 10, dtype=torch.float64)
    parts = ffn.expand(x).chunk(4, dim=1)
    normed = [
        F.batch_norm(
            F.conv2d(
                part,
                state[f'dwconvs.{j}.conv.weight'],
                padding=(3, 5, 7, 9)[j] // 2,
                groups=4), state[f'dwconvs.{j}.norm.running_mean'],
            state[f'dwconvs.{j}.norm.running_var'],
            state[f'dwconvs.{j}.norm.weight'], state[f'dwconvs.{j}.norm.bias'])
        for j, part in enumerate(parts)
    ]
    hidden = torch.stack(normed, 2).flatten(1, 2) if redistribute \
        else torch.cat(normed, 1)
    expected = ffn.project.norm(
        F.conv2d(F.gelu(hidden), ffn.project.conv.weight, groups=4))
    torch.testing.assert_close(ffn(x), expected)


def test_group_norm_normalises_each_group_before_the_shuffle():
    """A norm with statistics across channels (GN) stays one per group:
    normalising the shuffled map as a whole would be another function."""
    cfg = dict(type='GN', num_groups=2)
    ffn = _random_weights(CIFFN(8, ffn_ratio=2, norm_cfg=cfg)).double()
    assert isinstance(ffn.dw_norm, nn.ModuleList) and len(ffn.dw_norm) == 4
    x = torch.randn(2, 8, 6, 7, dtype=torch.float64)
    parts = ffn.expand(x).chunk(4, dim=1)
    normed = [
        norm(conv(part))
        for norm, conv, part in zip(ffn.dw_norm, ffn.dwconvs, parts)
    ]
    expected = ffn.project(ffn.act(torch.stack(normed, 2).flatten(1, 2)))
    torch.testing.assert_close(ffn(x), expected)
    with pytest.raises(RuntimeError, match='batch norm'):
        ffn.eval().switch_to_deploy()


def test_deployed_per_group_projection_follows_its_weight():
    """The deploy form's per-group path derives its projection matrix once
    per weight value: an in-place change (or a load) of the weight is seen
    by the next forward."""
    ffn = _random_weights(CIFFN(16, ffn_ratio=2)).eval()
    ffn.switch_to_deploy()
    x = torch.randn(2, 16, 48, 48)  # above MERGE_MAX_PIXELS: per group
    assert 2 * 48 * 48 >= CIFFN.MERGE_MAX_PIXELS
    with torch.no_grad():
        before = ffn(x)
        ffn.project.weight.mul_(2)
        after = ffn(x)
        fresh = copy.deepcopy(ffn)
        fresh.__dict__.pop('_derived_cache', None)
        torch.testing.assert_close(after, fresh(x))
    assert not torch.allclose(before, after)
