"""SAEViT backbone: shapes, gradients, freezing, norm_eval, with_cp, init,
ablations, and the errors on bad input."""
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from saevit_mm.models import SAEViT
from saevit_mm.models.layers import (CIFFN, ConvFFN, DWSConv, MHSA2d,
                                     SparselyAggregatedAttention)
from .utils import (TINY_ARCH, all_finite, assert_same_state, check_norm_state,
                    expected_size, norm_layers)

ALL_STAGES = (0, 1, 2, 3)


def assert_shapes(model, outs, batch, height, width):
    assert isinstance(outs, tuple)
    assert len(outs) == len(model.out_indices)
    for out, index, channels, stride in zip(outs, model.out_indices,
                                            model.out_channels,
                                            model.out_strides):
        assert stride == 4 * 2**index
        assert tuple(out.shape) == (batch, channels,
                                    expected_size(height, stride),
                                    expected_size(width, stride))
        assert out.is_contiguous()


# ---------------------------------------------------------------- arch table


@pytest.mark.parametrize(
    'arch,alias,channels',
    [('t', 'tiny', (40, 80, 192, 384)), ('s', 'small', (48, 128, 256, 512))])
def test_arch_zoo_names_and_aliases(arch, alias, channels):
    assert SAEViT.arch_zoo[arch] is SAEViT.arch_zoo[alias]
    model = SAEViT(alias, out_indices=ALL_STAGES)
    assert model.out_channels == channels
    assert model.out_strides == (4, 8, 16, 32)


def test_custom_arch_matches_zoo_entry():
    custom = SAEViT(dict(SAEViT.arch_zoo['t']))
    zoo = SAEViT('t')
    assert [(k, v.shape) for k, v in custom.state_dict().items()] == \
        [(k, v.shape) for k, v in zoo.state_dict().items()]


def test_custom_arch_with_other_stage_count(tiny_arch):
    three = {k: v[:3] if isinstance(v, tuple) else v
             for k, v in tiny_arch.items()}
    model = SAEViT(three, out_indices=(-3, -2, -1)).eval()
    assert model.out_indices == (0, 1, 2)
    assert model.min_input_size == 16
    outs = model(torch.rand(1, 3, 33, 17))
    assert_shapes(model, outs, 1, 33, 17)


def test_submodule_names_are_the_checkpoint_format(tiny_arch):
    model = SAEViT(tiny_arch, out_indices=(1, 3))
    names = dict(model.named_children())
    # every stage has its norm, output or not (it is on the main path)
    assert set(names) == {'stem', 'stages', 'norm0', 'norm1', 'norm2',
                          'norm3'}
    assert model.stages[0].downsample is None
    keys = model.state_dict().keys()
    for i, depth in enumerate(tiny_arch['depths']):
        for j in range(depth):
            assert any(k.startswith(f'stages.{i}.blocks.{j}.') for k in keys)
        assert any(k.startswith(f'stages.{i}.downsample.')
                   for k in keys) == (i > 0)


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize('out_indices', [
    pytest.param(0, id='int0'),
    pytest.param(-1, id='last'),
    pytest.param((1, ), id='1'),
    pytest.param((2, ), id='2'),
    pytest.param((0, 2), id='0,2'),
    pytest.param((1, 2, 3), id='1,2,3'),
    pytest.param((3, 0, 1), id='unsorted'),
    pytest.param((-4, -3, -2, -1), id='negative'),
    pytest.param(ALL_STAGES, id='all'),
])
@pytest.mark.parametrize('size', [(64, 64), (97, 131)], ids=str)
def test_out_indices_shapes(tiny_arch, out_indices, size):
    model = SAEViT(tiny_arch, out_indices=out_indices).eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, *size))
    expected = sorted({
        i % 4
        for i in ((out_indices, )
                  if isinstance(out_indices, int) else out_indices)
    })
    assert model.out_indices == tuple(expected)
    assert_shapes(model, outs, 2, *size)
    assert all_finite(outs)


@pytest.mark.parametrize('arch', ['t', 's'])
@pytest.mark.parametrize('shape', [(1, 3, 97, 131), (2, 3, 224, 224),
                                   (1, 3, 512, 683)],
                         ids=lambda s: 'x'.join(map(str, s)))
def test_real_archs_on_odd_sizes(arch, shape):
    model = SAEViT(arch, out_indices=ALL_STAGES).eval()
    with torch.no_grad():
        outs = model(torch.rand(*shape))
    assert_shapes(model, outs, *shape[:1], *shape[2:])
    assert all_finite(outs)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 3),
    height=st.integers(32, 160),
    width=st.integers(32, 160))
def test_property_any_size_and_batch(batch, height, width):
    torch.manual_seed(batch * 1000 + height + width)
    model = _tiny_eval_model()
    with torch.no_grad():
        outs = model(torch.randn(batch, 3, height, width))
    assert_shapes(model, outs, batch, height, width)
    assert all_finite(outs)


_TINY_EVAL = {}


def _tiny_eval_model():
    # one model for all examples: building is the slow part
    if 'model' not in _TINY_EVAL:
        _TINY_EVAL['model'] = SAEViT(TINY_ARCH, out_indices=ALL_STAGES).eval()
    return _TINY_EVAL['model']


def test_batch_elements_are_independent(tiny_arch):
    """Padding and attention never mix the images of a batch (eval)."""
    model = SAEViT(tiny_arch, out_indices=ALL_STAGES).eval()
    x = torch.rand(3, 3, 70, 45)
    with torch.no_grad():
        batched = model(x)
        single = model(x[1:2])
    for b, s in zip(batched, single):
        torch.testing.assert_close(b[1:2], s, rtol=1e-4, atol=1e-5)


def test_in_channels(tiny_arch):
    model = SAEViT(tiny_arch, in_channels=1).eval()
    assert model.stem.conv1.conv.in_channels == 1
    assert_shapes(model, model(torch.rand(1, 1, 40, 40)), 1, 40, 40)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize('kwargs', [
    pytest.param({}, id='saevit'),
    pytest.param(dict(attn_type='mhsa'), id='mhsa'),
    pytest.param(dict(ffn_type='ffn'), id='ffn'),
    pytest.param(dict(use_dwsconv=False), id='no-dwsconv'),
])
def test_every_parameter_gets_a_gradient(tiny_arch, kwargs):
    model = SAEViT(tiny_arch, out_indices=ALL_STAGES, **kwargs)
    model.init_weights()
    model.train()
    outs = model(torch.randn(2, 3, 65, 47))
    sum(o.square().mean() for o in outs).backward()
    missing = [
        n for n, p in model.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all()
        or p.grad.abs().sum() == 0
    ]
    assert missing == []


def _forward_backward(model, x):
    outs = model(x)
    loss = sum((o * torch.linspace(0, 1, o.numel()).view_as(o)).sum()
               for o in outs)
    loss.backward()
    grads = {
        n: None if p.grad is None else p.grad.clone()
        for n, p in model.named_parameters()
    }
    return [o.detach() for o in outs], grads


def _train_steps(model, inputs):
    """One forward, backward and SGD step per input; the outputs and
    gradients of every step. Reseeds before each step so that two models
    draw the same drop-path masks."""
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad],
        lr=1e-4,
        momentum=0.9)
    history = []
    for step, x in enumerate(inputs):
        torch.manual_seed(step)
        optimizer.zero_grad()
        outs, grads = _forward_backward(model, x)
        assert all_finite(outs), f'step {step}: the training diverged'
        history.append((outs, grads))
        optimizer.step()
    return history


@pytest.mark.parametrize('kwargs', [
    pytest.param({}, id='plain'),
    pytest.param(dict(frozen_stages=2), id='frozen2'),
    pytest.param(dict(norm_eval=True), id='norm-eval'),
])
def test_with_cp_trains_like_without(tiny_arch, kwargs):
    """Three SGD steps with and without ``with_cp`` give the same outputs,
    gradients, weights and BatchNorm buffers: the recompute in backward
    must not update the running statistics a second time."""
    base = SAEViT(
        tiny_arch, out_indices=ALL_STAGES, drop_path_rate=0.2, **kwargs)
    base.init_weights()
    cp = SAEViT(
        tiny_arch,
        out_indices=ALL_STAGES,
        drop_path_rate=0.2,
        with_cp=True,
        **kwargs)
    cp.load_state_dict(base.state_dict())
    base.train()
    cp.train()
    inputs = [torch.randn(2, 3, 64, 48) for _ in range(3)]
    steps = zip(_train_steps(base, inputs), _train_steps(cp, inputs))
    for step, ((outs, grads), (outs_cp, grads_cp)) in enumerate(steps):
        for a, b in zip(outs, outs_cp):
            torch.testing.assert_close(b, a, msg=f'step {step}')
        assert grads.keys() == grads_cp.keys()
        frozen = {n for n, g in grads.items() if g is None}
        assert frozen == {n for n, g in grads_cp.items() if g is None}
        assert bool(frozen) == ('frozen_stages' in kwargs)
        for name in grads.keys() - frozen:
            torch.testing.assert_close(
                grads_cp[name], grads[name], msg=f'step {step}: {name}')
    # weights and every BatchNorm buffer, num_batches_tracked included
    assert_same_state(cp.state_dict(), base.state_dict())
    # one update per step (the recompute used to add a second one)
    tracked = cp.stages[-1].blocks[0].norm1.num_batches_tracked.item()
    assert tracked == (0 if kwargs.get('norm_eval') else len(inputs))


def test_with_cp_argument_reaches_every_stage(tiny_arch):
    model = SAEViT(tiny_arch, with_cp=True)
    assert all(stage.with_cp for stage in model.stages)


# ---------------------------------------------------------------- freezing


def _frozen_and_trainable(model, frozen_stages):
    frozen = [model.stem] if frozen_stages >= 0 else []
    for i in range(max(frozen_stages, 0)):
        frozen.append(model.stages[i])
        frozen.append(getattr(model, f'norm{i}'))
    trainable = [
        model.stages[i] for i in range(max(frozen_stages, 0), 4)
    ] + [
        getattr(model, f'norm{i}')
        for i in range(max(frozen_stages, 0), 4)
    ]
    return frozen, trainable


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 3, 4])
def test_frozen_stages_stop_grad_and_stay_eval(tiny_arch, frozen_stages):
    model = SAEViT(
        tiny_arch, out_indices=ALL_STAGES, frozen_stages=frozen_stages)
    model.train()
    frozen, trainable = _frozen_and_trainable(model, frozen_stages)
    stats = [(m.running_mean.clone()) for f in frozen for m in f.modules()
             if isinstance(m, nn.BatchNorm2d)]
    loss = sum(o.sum() for o in model(torch.randn(2, 3, 64, 64)))
    assert loss.requires_grad == (frozen_stages < 4)
    if loss.requires_grad:
        loss.backward()
    for module in frozen:
        assert not module.training
        assert all(not m.training for m in module.modules())
        for p in module.parameters():
            assert not p.requires_grad and p.grad is None
    for module in trainable:
        assert module.training
        for p in module.parameters():
            assert p.requires_grad and p.grad is not None
    after = [(m.running_mean) for f in frozen for m in f.modules()
             if isinstance(m, nn.BatchNorm2d)]
    for s, a in zip(stats, after):
        torch.testing.assert_close(s, a, rtol=0, atol=0)
    # a later train() call does not unfreeze
    model.eval()
    model.train()
    assert all(not m.training for f in frozen for m in f.modules())


@pytest.mark.parametrize('norm_eval', [False, True])
def test_norm_eval(tiny_arch, norm_eval):
    model = SAEViT(tiny_arch, out_indices=ALL_STAGES, norm_eval=norm_eval)
    model.train()
    assert check_norm_state(model, not norm_eval)
    assert model.stages[0].training
    bn = model.stages[2].blocks[1].norm1
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    changed = not torch.equal(before, bn.running_mean)
    assert changed != norm_eval
    model.eval()
    assert check_norm_state(model, False)


def test_norm_cfg_is_used_everywhere(tiny_arch):
    model = SAEViT(
        tiny_arch,
        out_indices=ALL_STAGES,
        norm_cfg=dict(type='GN', num_groups=1),
        recovery_norm_cfg=dict(type='GN', num_groups=2))
    layers = list(norm_layers(model))
    assert layers and all(isinstance(m, nn.GroupNorm) for m in layers)
    recovery = [m.norm for m in model.modules()
                if isinstance(m, SparselyAggregatedAttention)
                and m.recovery is not None]
    assert recovery and all(m.num_groups == 2 for m in recovery)
    model.train()
    outs = model(torch.randn(1, 3, 40, 40))
    assert_shapes(model, outs, 1, 40, 40)


# ---------------------------------------------------------------- ablations


@pytest.mark.parametrize('kwargs,attn,ffn,dws', [
    pytest.param({}, SparselyAggregatedAttention, CIFFN, True, id='full'),
    pytest.param(
        dict(attn_type='mhsa'), MHSA2d, CIFFN, True, id='mhsa'),
    pytest.param(
        dict(ffn_type='ffn'),
        SparselyAggregatedAttention,
        ConvFFN,
        True,
        id='ffn'),
    pytest.param(
        dict(use_dwsconv=False),
        SparselyAggregatedAttention,
        CIFFN,
        False,
        id='no-dwsconv'),
    pytest.param(
        dict(attn_type='mhsa', ffn_type='ffn', use_dwsconv=False),
        MHSA2d,
        ConvFFN,
        False,
        id='baseline'),
])
def test_ablation_switches_build_and_run(tiny_arch, kwargs, attn, ffn, dws):
    model = SAEViT(tiny_arch, out_indices=ALL_STAGES, **kwargs).eval()
    blocks = [b for stage in model.stages for b in stage.blocks]
    assert all(type(b.attn) is attn for b in blocks)
    assert all(type(b.ffn) is ffn for b in blocks)
    assert all(isinstance(b.dwsconv, DWSConv) == dws for b in blocks)
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 97, 75))
    assert_shapes(model, outs, 1, 97, 75)
    assert all_finite(outs)


def test_drop_path_grows_linearly(tiny_arch):
    model = SAEViT(tiny_arch, drop_path_rate=0.4)
    rates = [
        getattr(b.drop_path, 'drop_prob', 0.) for s in model.stages
        for b in s.blocks
    ]
    torch.testing.assert_close(
        torch.tensor(rates), torch.linspace(0, 0.4, len(rates)))


# ---------------------------------------------------------------- init


def _sampling_convs(model):
    """The SAA sampling and recovery convolutions (initialised as cell
    average and copy, not at random)."""
    return {
        conv
        for m in model.modules()
        if isinstance(m, SparselyAggregatedAttention)
        and m.sampler is not None
        for conv in (m.sampler, m.recovery)
    }


def test_default_init(tiny_arch):
    model = SAEViT(tiny_arch)
    for p in model.parameters():
        nn.init.constant_(p, 5.)
    model.init_weights()
    saa = model.stages[0].blocks[0].attn
    torch.testing.assert_close(saa.sampler.weight,
                               torch.full_like(saa.sampler.weight, 1 / 16))
    assert torch.equal(saa.recovery.weight,
                       torch.ones_like(saa.recovery.weight))
    # every other convolution: 1x1 ones (token-wise linear layers) ViT's
    # truncated normal, std 0.02; spatial ones He's normal over their
    # group's fan-out (k_h * k_w * out_channels / groups); zero bias
    sampling = _sampling_convs(model)
    convs = [
        m for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
        and m not in sampling
    ]
    pointwise = [m for m in convs if m.kernel_size == (1, 1)]
    weights = torch.cat([m.weight.flatten() for m in pointwise])
    assert weights.numel() > 10000
    assert abs(weights.mean().item()) < 0.001
    assert 0.019 < weights.std().item() < 0.021
    # truncation at +-2 (mmengine's absolute bounds) is 100 std away
    assert weights.abs().max().item() < 0.2
    spatial = [m for m in convs if m.kernel_size != (1, 1)]
    standardized = torch.cat([
        m.weight.flatten() / (2 / (m.kernel_size[0] * m.kernel_size[1] *
                                   m.out_channels // m.groups))**.5
        for m in spatial
    ])
    assert standardized.numel() > 1000
    assert abs(standardized.mean().item()) < 0.05
    assert 0.95 < standardized.std().item() < 1.05
    # a depth-wise 3x3 has fan-out 9: std 0.47, far from ViT's 0.02
    dw = model.stages[0].blocks[0].dwsconv.dw.conv
    assert dw.groups == dw.in_channels and dw in spatial
    assert 0.3 < dw.weight.std().item() < 0.65
    for m in convs:
        if m.bias is not None:
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
    for m in norm_layers(model):
        assert torch.equal(m.weight, torch.ones_like(m.weight))
        assert torch.equal(m.bias, torch.zeros_like(m.bias))


def _random_state(model, seed):
    """A state dict of ``model``'s layout with random values everywhere
    (parameters and BatchNorm statistics)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            value = torch.rand(value.shape, generator=gen) + 0.5
        else:
            value = torch.randint(1, 100, value.shape, generator=gen)
        state[name] = value
    return state


def test_pretrained_init_loads_and_skips_custom_init(tiny_arch, tmp_path):
    """Every key comes from the checkpoint, and the default init (random
    draws, overwritten at once by the load) does not run: the global RNG
    is left as it was."""
    model = SAEViT(
        tiny_arch,
        out_indices=ALL_STAGES,
        init_cfg=dict(
            type='Pretrained',
            checkpoint=str(tmp_path / 'classifier.pth'),
            prefix='backbone.'))
    state = _random_state(model, seed=1)
    torch.save(
        dict(state_dict={f'backbone.{k}': v
                         for k, v in state.items()}),
        tmp_path / 'classifier.pth')
    rng = torch.get_rng_state()
    model.init_weights()
    assert torch.equal(torch.get_rng_state(), rng)
    assert_same_state(model.state_dict(), state, exact=True)


def test_second_init_weights_keeps_loaded_weights(tiny_arch):
    """mmengine's contract: a module initialises once; a second
    ``init_weights()`` (say, by a runner after a checkpoint was loaded)
    changes nothing."""
    model = SAEViT(tiny_arch, out_indices=ALL_STAGES)
    model.init_weights()
    assert model.is_init
    state = _random_state(model, seed=2)
    model.load_state_dict(state)
    model.init_weights()
    assert_same_state(model.state_dict(), state, exact=True)


def test_get_layer_depth(tiny_arch):
    model = SAEViT(tiny_arch, out_indices=ALL_STAGES)
    num_layers = sum(tiny_arch['depths']) + 2
    assert model.get_layer_depth('backbone.stem.conv1.conv.weight',
                                 'backbone.') == (0, num_layers)
    assert model.get_layer_depth('stages.0.blocks.0.ffn.expand.conv.weight'
                                 ) == (1, num_layers)
    assert model.get_layer_depth('stages.2.downsample.conv.weight') == (
        3, num_layers)
    assert model.get_layer_depth('stages.2.blocks.1.norm1.weight') == (
        4, num_layers)
    # norm{i} ends stage i: it goes with that stage's last block
    assert model.get_layer_depth('norm3.weight') == (num_layers - 2,
                                                     num_layers)
    assert model.get_layer_depth('norm0.bias') == (tiny_arch['depths'][0],
                                                   num_layers)
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (
        num_layers - 1, num_layers)
    depths = {
        model.get_layer_depth(n)[0]
        for n, _ in model.named_parameters() if n.startswith('stages.')
    }
    assert depths == set(range(1, num_layers - 1))


# ---------------------------------------------------------------- bad input


def test_unknown_arch_name():
    with pytest.raises(KeyError, match=r"Unknown arch 'xl'.*'s', 'small', "
                       r"'t', 'tiny'"):
        SAEViT('xl')


def test_arch_of_wrong_type():
    with pytest.raises(TypeError, match='arch must be a name'):
        SAEViT(('t', ))


def test_custom_arch_missing_key(tiny_arch):
    del tiny_arch['num_heads']
    with pytest.raises(KeyError, match=r"missing keys \['num_heads'\].*"
                       'Required keys are'):
        SAEViT(tiny_arch)


def test_custom_arch_unknown_key(tiny_arch):
    tiny_arch['mlp_ratio'] = 4
    with pytest.raises(
            KeyError,
            match=r"unknown keys \['mlp_ratio'\].*optional keys are "
            r"\['ffn_kernel_sizes', 'max_delegates'\]"):
        SAEViT(tiny_arch)


def test_custom_arch_mismatched_lengths(tiny_arch):
    tiny_arch['depths'] = (1, 1, 2)
    with pytest.raises(ValueError, match='same, non-zero length.*'
                       "'depths': 3"):
        SAEViT(tiny_arch)


@pytest.mark.parametrize('key,value,message', [
    ('embed_dims', (8, 16, 24, 0), 'positive ints'),
    ('embed_dims', 8, 'sequence of positive ints'),
    ('num_heads', (1, 3, 2, 4), 'must divide embed_dims'),
    ('ffn_ratio', 0, 'positive number'),
    ('ffn_ratio', 1.3, 'multiples of the number of groups'),
    ('ffn_kernel_sizes', (3, 4), 'odd positive ints'),
])
def test_custom_arch_bad_values(tiny_arch, key, value, message):
    tiny_arch[key] = value
    with pytest.raises(ValueError, match=message):
        SAEViT(tiny_arch)


@pytest.mark.parametrize('out_indices', [4, -5, (0, 4), (1, -5)],
                         ids=str)
def test_out_indices_out_of_range(tiny_arch, out_indices):
    with pytest.raises(ValueError,
                       match=r'out of range for 4 stages; allowed indices '
                       r'are -4\.\.3'):
        SAEViT(tiny_arch, out_indices=out_indices)


@pytest.mark.parametrize('out_indices,error,message', [
    ((), ValueError, 'at least one stage'),
    ((1, -3), ValueError, 'same stage twice'),
    ('0', TypeError, 'int or a sequence of ints'),
    ((0.5, ), TypeError, 'int or a sequence of ints'),
])
def test_out_indices_malformed(tiny_arch, out_indices, error, message):
    with pytest.raises(error, match=message):
        SAEViT(tiny_arch, out_indices=out_indices)


@pytest.mark.parametrize('frozen_stages', [-2, 5, 1.0])
def test_frozen_stages_out_of_range(tiny_arch, frozen_stages):
    with pytest.raises(ValueError, match=r'frozen_stages must be an int in '
                       r'-1\.\.4'):
        SAEViT(tiny_arch, frozen_stages=frozen_stages)


@pytest.mark.parametrize('kwargs,message', [
    (dict(attn_type='swin'), r"attn_type must be one of \('saa', 'mhsa'\)"),
    (dict(ffn_type='mlp'),
     r"ffn_type must be one of \('ciffn', 'ciffn_no_shuffle', 'ffn'\)"),
    (dict(in_channels=0), 'in_channels must be a positive int'),
    (dict(drop_path_rate=1.0), r'drop_path_rate must be in \[0, 1\)'),
])
def test_bad_constructor_arguments(tiny_arch, kwargs, message):
    with pytest.raises(ValueError, match=message):
        SAEViT(tiny_arch, **kwargs)


def test_wrong_number_of_input_channels(tiny_arch):
    model = SAEViT(tiny_arch).eval()
    with pytest.raises(ValueError,
                       match=re.escape('built for in_channels=3, but the '
                                       'input has 4 channels')):
        model(torch.rand(1, 4, 64, 64))


def test_input_not_4d(tiny_arch):
    model = SAEViT(tiny_arch).eval()
    with pytest.raises(ValueError, match=r'NCHW tensor \(4 dims\)'):
        model(torch.rand(3, 64, 64))


@pytest.mark.parametrize('size', [(31, 64), (64, 20), (8, 8)], ids=str)
def test_input_smaller_than_the_network_can_reduce(tiny_arch, size):
    model = SAEViT(tiny_arch).eval()
    with pytest.raises(ValueError,
                       match=f'Input {size[0]}x{size[1]} is smaller than '
                       'this network can reduce.*>= 32'):
        model(torch.rand(1, 3, *size))
    # the smallest allowed size works
    assert_shapes(model, model(torch.rand(1, 3, 32, 32)), 1, 32, 32)


def test_single_image_at_the_smallest_size_cannot_train_batchnorm(tiny_arch):
    """A 32x32 image alone gives the last stage a 1x1 map: BatchNorm in
    training mode would see one value per channel. Our error says what to
    change instead of torch's from deep inside the last stage."""
    model = SAEViT(tiny_arch).train()
    with pytest.raises(
            ValueError,
            match=re.escape('A batch of 1 image of 32x32 gives stage 3 a 1x1 '
                            'map') + '.*batch of 2 or more.*larger than '
            r'32x32.*norm_eval=True'):
        model(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize('shape,kwargs', [
    pytest.param((2, 3, 32, 32), {}, id='batch-2'),
    pytest.param((1, 3, 32, 33), {}, id='1x2-last-map'),
    pytest.param((1, 3, 32, 32), dict(norm_eval=True), id='norm-eval'),
    pytest.param((1, 3, 32, 32), dict(frozen_stages=4), id='all-frozen'),
    pytest.param((1, 3, 32, 32),
                 dict(norm_cfg=dict(type='GN', num_groups=1)),
                 id='group-norm'),
])
def test_smallest_size_trains_where_the_norms_allow(tiny_arch, shape,
                                                    kwargs):
    model = SAEViT(tiny_arch, out_indices=ALL_STAGES, **kwargs).train()
    outs = model(torch.rand(*shape))
    assert_shapes(model, outs, shape[0], *shape[2:])
    assert all_finite(outs)
