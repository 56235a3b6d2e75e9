"""Sparsely Aggregated Attention, its attention core and the MHSA ablation."""
import math

import pytest
import torch
import torch.nn.functional as F

from saevit_mm.models.layers import (Attention2d, MHSA2d,
                                     SparselyAggregatedAttention,
                                     coarse_tokens)


def reference_coarse(x):
    """3x3 / stride 2 / pad 1 average over the valid pixels, by loops."""
    B, C, H, W = x.shape
    out = torch.empty(B, C, math.ceil(H / 2), math.ceil(W / 2))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            rows = slice(max(2 * i - 1, 0), min(2 * i + 2, H))
            cols = slice(max(2 * j - 1, 0), min(2 * j + 2, W))
            out[:, :, i, j] = x[:, :, rows, cols].mean(dim=(2, 3))
    return out


def reference_attention(attn, x):
    """Softmax attention written out: per head, q.k^T / sqrt(d), then v."""
    B, C, H, W = x.shape
    heads, d = attn.num_heads, attn.head_dims
    q, k, v = attn.qkv(x).split(C, dim=1)
    if attn.multi_scale:
        k = torch.cat([k.flatten(2), reference_coarse(k).flatten(2)], 2)
        v = torch.cat([v.flatten(2), reference_coarse(v).flatten(2)], 2)
    q = q.reshape(B, heads, d, -1)
    k = k.reshape(B, heads, d, -1)
    v = v.reshape(B, heads, d, -1)
    weights = torch.einsum('bhdn,bhdm->bhnm', q, k).div(d**0.5).softmax(-1)
    return torch.einsum('bhnm,bhdm->bhdn', weights, v).reshape(B, C, H, W)


@pytest.mark.parametrize('size', [(1, 1), (1, 6), (5, 7), (8, 8)], ids=str)
def test_coarse_tokens_halve_and_average(size):
    x = torch.randn(2, 3, *size)
    torch.testing.assert_close(coarse_tokens(x), reference_coarse(x))


@pytest.mark.parametrize('multi_scale', [True, False])
@pytest.mark.parametrize('heads', [1, 2, 4])
def test_attention_matches_reference(multi_scale, heads):
    attn = Attention2d(16, heads, multi_scale=multi_scale).eval()
    x = torch.randn(2, 16, 5, 7)
    torch.testing.assert_close(
        attn(x), reference_attention(attn, x), rtol=1e-4, atol=1e-5)


def test_attention_head_check():
    with pytest.raises(ValueError, match=r'num_heads \(3\) must be a '
                       r'positive divisor of embed_dims \(16\)'):
        Attention2d(16, 3)


@pytest.mark.parametrize('ratio', [1, 2, 3, 4])
@pytest.mark.parametrize('size', [(4, 4), (7, 9), (13, 6), (1, 1)], ids=str)
def test_saa_keeps_any_size(ratio, size):
    saa = SparselyAggregatedAttention(16, 2, sample_ratio=ratio).eval()
    x = torch.randn(2, 16, *size)
    assert saa(x).shape == x.shape


@pytest.mark.parametrize('ratio', [2, 4])
def test_saa_attends_among_delegates_only(ratio):
    saa = SparselyAggregatedAttention(16, 2, sample_ratio=ratio).eval()
    seen = []
    saa.attn.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    saa(torch.randn(1, 16, 29, 14))
    assert seen == [
        torch.Size([1, 16, math.ceil(29 / ratio),
                    math.ceil(14 / ratio)])
    ]


def test_saa_initial_sampling_is_cell_average_and_recovery_a_copy():
    saa = SparselyAggregatedAttention(8, 1, sample_ratio=4).eval()
    x = torch.randn(2, 8, 12, 16)
    torch.testing.assert_close(saa.sampler(x), F.avg_pool2d(x, 4))
    d = torch.randn(2, 8, 3, 4)
    upsampled = d.repeat_interleave(4, 2).repeat_interleave(4, 3)
    torch.testing.assert_close(saa.recovery(d), upsampled)
    # so the whole layer starts constant on every 4x4 cell (the per-pixel
    # norm keeps a constant cell constant)
    out = saa(x).reshape(2, 8, 3, 4, 4, 4)
    assert out.std(dim=(3, 5)).max() < 1e-5


def reference_saa(saa, x):
    """SAA (``r > 1``, eval mode, no bound) written out cell by cell.

    The map is cut into ``r`` x ``r`` cells from the top-left corner; a cell
    on the bottom or right border that the map cuts short takes the last
    row / column of the map in place of the missing ones (edge padding).
    Every output pixel takes its cell's attended delegate, scaled by the
    recovery weight at its place in the cell, then the recovery norm (per
    pixel over the channels) and the 1x1 projection.
    """
    r = saa.sample_ratio
    B, C, H, W = x.shape
    rows, cols = math.ceil(H / r), math.ceil(W / r)
    sample = saa.sampler.weight[:, 0]  # (C, r, r)
    delegates = torch.zeros(B, C, rows, cols)
    for i in range(rows):
        for j in range(cols):
            for a in range(r):
                for b in range(r):
                    pixel = x[:, :, min(i * r + a, H - 1),
                              min(j * r + b, W - 1)]
                    delegates[:, :, i, j] += pixel * sample[:, a, b]
    tokens = reference_attention(saa.attn, delegates)
    spread = saa.recovery.weight[:, 0]  # (C, r, r)
    out = torch.empty(B, C, H, W)
    for y in range(H):
        for x_ in range(W):
            out[:, :, y, x_] = tokens[:, :, y // r, x_ // r] * \
                spread[:, y % r, x_ % r]
    ln = saa.norm
    if not isinstance(ln, torch.nn.Identity):  # LN2d
        mean = out.mean(1, keepdim=True)
        var = out.var(1, unbiased=False, keepdim=True)
        out = (out - mean) / torch.sqrt(var + ln.eps) * \
            ln.weight[:, None, None] + ln.bias[:, None, None]
    return torch.einsum('oc,bchw->bohw', saa.proj.weight[:, :, 0, 0],
                        out) + saa.proj.bias[:, None, None]


def randomize(saa):
    """Random weights (the init is too regular)."""
    for p in saa.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return saa


@pytest.mark.parametrize('ratio,size', [
    pytest.param(4, (7, 10), id='r4-7x10'),
    pytest.param(4, (8, 12), id='r4-divisible'),
    pytest.param(3, (5, 13), id='r3-5x13'),
    pytest.param(2, (1, 1), id='r2-1x1'),
])
@pytest.mark.parametrize('norm_cfg', [None, dict(type='LN2d')],
                         ids=['no-norm', 'LN2d'])
def test_saa_matches_cell_by_cell_reference(ratio, size, norm_cfg):
    """Any size: edge-padded border cells, no extra cell when the size
    divides, the output cropped to the input's size from the top-left."""
    saa = randomize(
        SparselyAggregatedAttention(
            8, 2, sample_ratio=ratio, norm_cfg=norm_cfg).eval())
    x = torch.randn(2, 8, *size)
    torch.testing.assert_close(
        saa(x), reference_saa(saa, x), rtol=1e-4, atol=1e-5)


def test_saa_gradients_reach_sampling_and_recovery():
    saa = SparselyAggregatedAttention(8, 2, sample_ratio=2).train()
    saa(torch.randn(2, 8, 9, 11)).square().sum().backward()
    for name, p in saa.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_saa_ratio_one_is_attention_plus_projection():
    saa = SparselyAggregatedAttention(8, 2, sample_ratio=1).eval()
    assert saa.sampler is None and saa.recovery is None
    x = torch.randn(1, 8, 5, 6)
    torch.testing.assert_close(saa(x), saa.proj(saa.attn(x)))


@pytest.mark.parametrize('ratio', [0, -1, 2.0, True])
def test_saa_rejects_bad_sample_ratio(ratio):
    with pytest.raises(ValueError, match='sample_ratio must be a positive '
                       'int'):
        SparselyAggregatedAttention(8, 2, sample_ratio=ratio)


def test_mhsa_is_full_single_scale_attention():
    mhsa = MHSA2d(16, 4).eval()
    assert not mhsa.attn.multi_scale
    x = torch.randn(2, 16, 6, 5)
    expected = mhsa.proj(reference_attention(mhsa.attn, x))
    torch.testing.assert_close(mhsa(x), expected, rtol=1e-4, atol=1e-5)
