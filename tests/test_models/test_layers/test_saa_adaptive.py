"""Resolution-adaptive SAA: the delegate bound, edge padding, linear cost."""
import math

import pytest
import torch
import torch.nn.functional as F

from saevit_mm.models import SAEViT
from saevit_mm.models.layers import SparselyAggregatedAttention
from saevit_mm.models.layers.saa import delegate_pool_factors, edge_pad
from saevit_mm.models.utils import count_complexity


def delegates_seen(saa, x):
    """The tokens SAA's attention core receives for input ``x``."""
    seen = []
    handle = saa.attn.register_forward_hook(
        lambda m, i, o: seen.append(i[0].detach()))
    try:
        saa(x)
    finally:
        handle.remove()
    return seen[0]


def composed_reference(saa, x, factors):
    """Above the bound, by definition: edge-pad to cells of ``k_h * r`` x
    ``k_w * r``, sample at ``r``, average ``k_h`` x ``k_w`` delegates,
    attend, upsample the result by nearest neighbour, recover at ``r``,
    crop, project."""
    r = saa.sample_ratio
    k_h, k_w = factors
    H, W = x.shape[-2:]
    x = F.pad(x, (0, -W % (k_w * r), 0, -H % (k_h * r)), mode='replicate')
    tokens = x if saa.sampler is None else saa.sampler(x)
    tokens = saa.attn(F.avg_pool2d(tokens, (k_h, k_w)))
    tokens = tokens.repeat_interleave(k_h, 2).repeat_interleave(k_w, 3)
    if saa.recovery is not None:
        tokens = saa.recovery(tokens)
    return saa.proj(saa.norm(tokens[..., :H, :W]))


def grid(h, w, factors):
    return math.ceil(h / factors[0]) * math.ceil(w / factors[1])


def coarsening_chain(h, w):
    """(1, 1), then 1 x 2, 2 x 2, 2 x 3, 3 x 3, ... sampled cells, the
    larger factor on the longer axis (the width of a square grid)."""
    yield 1, 1
    k = 1
    while True:
        for pair in ((k, k + 1), (k + 1, k + 1)):
            yield pair if w >= h else pair[::-1]
        k += 1


@pytest.mark.parametrize('h,w,bound,factors', [
    (14, 14, 196, (1, 1)),
    (14, 14, 195, (1, 2)),
    (14, 14, 97, (2, 2)),
    (25, 42, 1024, (1, 2)),
    (42, 25, 1024, (2, 1)),
    (50, 84, 1024, (2, 3)),
    (50, 84, 4096, (1, 2)),
    (64, 128, 1024, (3, 3)),
    (7, 7, 1, (7, 7)),
    (1, 9, 4, (2, 3)),
    (3, 5, None, (1, 1)),
])
def test_pool_factors_are_the_first_of_the_chain_that_fits(
        h, w, bound, factors):
    assert delegate_pool_factors(h, w, bound) == factors
    if bound is None:
        return
    chain = coarsening_chain(h, w)
    previous = None
    for pair in chain:
        if pair == factors:
            break
        assert grid(h, w, pair) > bound, pair
        previous = pair
    assert grid(h, w, factors) <= bound
    if previous is not None:  # one factor one up: at most half as many
        assert sum(factors) - sum(previous) == 1
        assert grid(h, w, factors) > bound / 2


def test_pool_factors_keep_more_than_half_the_bound():
    """Every grid up to 60 x 60 and every bound below it: above the bound,
    more than half of it; cells within one factor of square."""
    for bound in (1, 2, 3, 7, 16, 50, 64, 100, 255, 1024):
        for h in range(1, 61):
            for w in range(1, 61):
                k_h, k_w = delegate_pool_factors(h, w, bound)
                if h * w <= bound:
                    assert (k_h, k_w) == (1, 1)
                    continue
                assert bound / 2 < grid(h, w, (k_h, k_w)) <= bound, \
                    (h, w, bound)
                assert abs(k_h - k_w) <= 1


@pytest.mark.parametrize('ratio', [1, 2, 4])
@pytest.mark.parametrize('size', [(8, 8), (13, 6), (17, 23)], ids=str)
def test_at_or_below_the_bound_nothing_changes(ratio, size):
    """The bound equal to the delegate count: bit-identical to no bound."""
    free = SparselyAggregatedAttention(8, 2, sample_ratio=ratio).eval()
    count = math.ceil(size[0] / ratio) * math.ceil(size[1] / ratio)
    bounded = SparselyAggregatedAttention(
        8, 2, sample_ratio=ratio, max_delegates=count).eval()
    bounded.load_state_dict(randomize_state(free))
    x = torch.randn(2, 8, *size)
    assert torch.equal(bounded(x), free(x))
    assert delegates_seen(bounded, x).shape[-2:] == (
        math.ceil(size[0] / ratio), math.ceil(size[1] / ratio))


def randomize_state(saa):
    for p in saa.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return saa.state_dict()


@pytest.mark.parametrize('ratio', [1, 2, 4])
@pytest.mark.parametrize('size,bound', [((24, 40), 12), ((25, 33), 7),
                                        ((9, 70), 5), ((70, 9), 5),
                                        ((31, 17), 6)],
                         ids=str)
@pytest.mark.parametrize('deploy', [False, True], ids=['eager', 'deployed'])
def test_above_the_bound_coarser_cells_as_defined(ratio, size, bound, deploy):
    """Square and oblong cells (``k_h != k_w``), in both forms (the deployed
    recovery is :func:`spread_cells`)."""
    saa = SparselyAggregatedAttention(
        8, 2, sample_ratio=ratio, max_delegates=bound).eval()
    randomize_state(saa)
    if deploy:
        saa.switch_to_deploy()
    x = torch.randn(2, 8, *size)
    factors = saa.pool_factors(*size)
    assert factors != (1, 1)
    assert saa.cell_shape(*size) == (factors[0] * ratio, factors[1] * ratio)
    tokens = delegates_seen(saa, x)
    assert bound / 2 < tokens.shape[-2] * tokens.shape[-1] <= bound
    torch.testing.assert_close(
        saa(x), composed_reference(saa, x, factors), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('ratio,size,bound', [
    (4, (7, 10), None),
    (4, (13, 13), None),
    (3, (5, 13), None),
    (2, (9, 11), 4),
    (4, (30, 22), 6),
    (1, (7, 9), 4),
])
def test_a_constant_image_gives_that_constant_in_every_cell(
        ratio, size, bound):
    """At init (cell average), partial border cells included: edge padding,
    not zeros."""
    saa = SparselyAggregatedAttention(
        4, 1, sample_ratio=ratio, max_delegates=bound).eval()
    x = torch.full((1, 4, *size), 2.5)
    tokens = delegates_seen(saa, x)
    torch.testing.assert_close(tokens, torch.full_like(tokens, 2.5))


def saa_flops(saa, size):
    result = count_complexity(saa, (saa.proj.in_channels, *size))
    return result['flops'], result['flops_by_op'][
        'scaled_dot_product_attention']


@pytest.mark.parametrize('ratio', [1, 2])
def test_above_the_bound_cost_grows_linearly(ratio):
    """Four times the pixels above the bound: attention cost stays under
    what ``max_delegates`` tokens cost (queries x (fine + coarse keys) x
    (q.k + attn.v) x channels), the layer grows at most 4x (linear)."""
    bound, channels = 64, 16
    saa = SparselyAggregatedAttention(
        channels, 2, sample_ratio=ratio, max_delegates=bound)
    small_total, small_attn = saa_flops(saa, (64, 96))
    big_total, big_attn = saa_flops(saa, (128, 192))
    assert max(small_attn, big_attn) <= bound * (2 * bound) * 2 * channels
    assert big_total <= 4 * small_total
    free = SparselyAggregatedAttention(16, 2, sample_ratio=ratio)
    free_small, _ = saa_flops(free, (64, 96))
    free_big, _ = saa_flops(free, (128, 192))
    assert free_big > 8 * free_small  # what the bound removes


def test_bound_of_the_backbone_reaches_every_saa_layer():
    model = SAEViT('t', max_delegates=(None, 64, 16, 4))
    bounds = {
        name.split('.')[1]: m.max_delegates
        for name, m in model.named_modules()
        if isinstance(m, SparselyAggregatedAttention)
    }
    assert bounds == {'0': None, '1': 64, '2': 16, '3': 4}
    assert SAEViT('t').arch_settings['max_delegates'] == (1024, ) * 4
    assert SAEViT('t', max_delegates=None).arch_settings[
        'max_delegates'] == (None, ) * 4


@pytest.mark.parametrize('value,match', [
    ((1, 2), 'sequence of 4 entries'),
    (0, 'positive int'),
    ((8, 8, 8, 0), 'positive int'),
    ('1024', 'sequence of 4 entries'),
])
def test_bad_bounds_are_refused(value, match):
    with pytest.raises(ValueError, match=match):
        SAEViT('t', max_delegates=value)


def test_checkpoints_are_interchangeable_with_the_unbounded_model():
    """No new weights: a fixed-ratio model's state dict loads strictly into
    the bounded one and back; at 224 (below every bound) outputs agree."""
    free = SAEViT('t', max_delegates=None, out_indices=(0, 1, 2, 3)).eval()
    bounded = SAEViT('t', out_indices=(0, 1, 2, 3)).eval()
    bounded.load_state_dict(free.state_dict(), strict=True)
    free.load_state_dict(bounded.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    for a, b in zip(free(x), bounded(x), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize('pad_h,pad_w', [(0, 0), (3, 0), (0, 2), (5, 4)])
@pytest.mark.parametrize('channels_last', [False, True], ids=['NCHW', 'NHWC'])
def test_edge_pad_is_replicate_padding_in_the_input_memory_format(
        pad_h, pad_w, channels_last):
    """One copy into the padded map, the memory format kept (a
    concatenation gives NCHW, and the sampler conv then converts a
    channels-last model's map); gradients are the replicate padding's."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64).contiguous(
        memory_format=fmt).requires_grad_()
    out = edge_pad(x, pad_h, pad_w)
    expected = F.pad(x, (0, pad_w, 0, pad_h), mode='replicate')
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert out.is_contiguous(memory_format=fmt)
    grad = torch.randn_like(expected)
    got, = torch.autograd.grad(out, x, grad)
    want, = torch.autograd.grad(expected, x, grad)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize('deploy', [False, True], ids=['eager', 'deployed'])
def test_onnx_export_with_oblong_cells(tmp_path, deploy):
    """Above the bound with ``k_h != k_w`` (3 x 4 sampled cells), in both
    forms: the exported graph agrees with the layer."""
    pytest.importorskip('onnxruntime')
    from saevit_mm.deploy import check_onnx, export_onnx
    saa = SparselyAggregatedAttention(
        8, 2, sample_ratio=2, max_delegates=12).eval()
    randomize_state(saa)
    if deploy:
        saa.switch_to_deploy()
    shape = (1, 8, 17, 26)  # 9 x 13 delegates at ratio 2: 3 x 4 of them
    assert saa.pool_factors(*shape[-2:]) == (3, 4)
    path = tmp_path / 'saa.onnx'
    (name, ) = export_onnx(saa, shape, path)
    diffs = check_onnx(saa, path, shape)
    assert diffs[name] <= 1e-4 * max(1.0, diffs['max_abs_ref']), diffs
