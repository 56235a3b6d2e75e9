"""SAEViT's deploy form, built two ways: ``switch_to_deploy()`` of an eager
model and ``SAEViT(deploy=True)``. One structure; a state dict that holds
each weight once and loads into either with identical outputs; every
``out_indices``; any switch order."""
import copy

import pytest
import torch
from torch import nn

from saevit_mm.deploy import fold_conv_bn_pairs
from saevit_mm.models import SAEViT
from saevit_mm.models.layers import CIFFN
from .utils import TINY_ARCH, assert_same_state

ALL_STAGES = (0, 1, 2, 3)

#: every kind of part the deploy form changes
CASES = [
    pytest.param({}, id='default'),
    pytest.param(dict(attn_type='mhsa'), id='mhsa'),
    pytest.param(dict(ffn_type='ffn'), id='ffn'),
    pytest.param(dict(ffn_type='ciffn_no_shuffle'), id='ciffn-no-shuffle'),
    pytest.param(dict(use_dwsconv=False), id='no-dwsconv'),
    pytest.param(dict(recovery_norm_cfg=dict(type='BN')), id='recovery-bn'),
    pytest.param(
        dict(recovery_norm_cfg=dict(type='LN2d')), id='recovery-ln2d'),
]
#: the cases with a CIFFN, whose deploy form is derived from several weights
#: (the plain FFN of ffn_type='ffn' only folds its norms)
CIFFN_CASES = [case for case in CASES if case.id != 'ffn']


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Every parameter and norm statistic drawn anew, so that a weight
    loaded into the wrong place (or not at all) shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if not value.is_floating_point():
                continue
            draw = torch.randn(value.shape, generator=gen, dtype=value.dtype)
            if name.endswith('running_var'):
                value.copy_(1 + 0.5 * draw.abs())
            elif value.dim() == 1:
                value.copy_(1 + 0.2 * draw if name.endswith('weight')
                            else 0.1 * draw)
            else:
                value.copy_(draw / value[0].numel()**.5)
    return model


def _eager(seed: int = 0, out_indices=ALL_STAGES, **kwargs) -> SAEViT:
    model = SAEViT(TINY_ARCH, out_indices=out_indices, **kwargs)
    return _randomize(model, seed).eval()


def _deployed(seed: int = 0, **kwargs) -> SAEViT:
    model = _eager(seed, **kwargs)
    model.switch_to_deploy()
    return model


def _structure(model: nn.Module):
    """Module names and types, state-dict keys, shapes, dtypes and strides
    (memory format), and which parameters train."""
    return ([(name, type(m)) for name, m in model.named_modules()],
            [(key, tuple(v.shape), v.dtype, v.stride())
             for key, v in model.state_dict().items()],
            [(name, p.requires_grad) for name, p in model.named_parameters()])


def _outputs(model: nn.Module, x: torch.Tensor):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize('kwargs', CASES)
def test_deploy_true_builds_the_switched_form(kwargs):
    """The same modules, keys, shapes and memory formats as an eager model
    after switch_to_deploy, so that its state dict loads strictly."""
    built = SAEViT(TINY_ARCH, out_indices=ALL_STAGES, deploy=True, **kwargs)
    assert built.deploy
    assert _structure(built) == _structure(_deployed(**kwargs))


# the deploy form of CIFFN runs one of three ways (CIFFN docstring)
PATHS = [
    pytest.param({}, id='merged'),
    pytest.param(dict(MERGE_MAX_PIXELS=0), id='per-group'),
    pytest.param(
        dict(MERGE_MAX_PIXELS=0, CHUNK_MIN_WIDTH=1), id='per-group-chunks'),
]


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('kwargs', CASES)
def test_deployed_state_dict_loads_with_identical_outputs(
        kwargs, path, monkeypatch):
    """A deployed state dict loaded into a differently initialised model,
    switched or built with deploy=True, gives bit-identical outputs: the
    state dict holds everything the deployed forward reads."""
    for name, value in path.items():
        monkeypatch.setattr(CIFFN, name, value)
    source = _deployed(seed=0, **kwargs)
    state = source.state_dict()
    x = torch.randn(2, 3, 64, 48)
    expected = _outputs(source, x)
    switched = _deployed(seed=1, **kwargs)
    switched.load_state_dict(state)
    built = SAEViT(TINY_ARCH, out_indices=ALL_STAGES, deploy=True, **kwargs)
    built.load_state_dict(state)
    built.eval()
    for model in (switched, built):
        for a, b in zip(_outputs(model, x), expected, strict=True):
            assert torch.equal(a, b), (a - b).abs().max()


@pytest.mark.parametrize('kwargs', CIFFN_CASES)
def test_deployed_state_dict_holds_each_weight_once(kwargs):
    """No two entries share memory, every buffer is saved (nothing the
    forward reads is derived at switch time only), and the deploy form
    stores no more non-zero values than the eager model has values."""
    eager = _eager(**kwargs)
    deployed = copy.deepcopy(eager)
    deployed.switch_to_deploy()
    state = deployed.state_dict()
    storages = [v.untyped_storage().data_ptr() for v in state.values()]
    assert len(set(storages)) == len(storages), 'entries share memory'
    buffers = {name for name, _ in deployed.named_buffers()}
    assert buffers <= set(state), ('buffers left out of the state dict',
                                   sorted(buffers - set(state)))
    stored = sum(
        int(torch.count_nonzero(v)) for v in state.values()
        if v.is_floating_point())
    eager_values = sum(v.numel() for v in eager.state_dict().values()
                       if v.is_floating_point())
    assert stored <= eager_values, (stored, eager_values)


@pytest.mark.parametrize(
    'out_indices', [(0, ), (0, 1, 2), (3, ), (1, 3), ALL_STAGES], ids=str)
def test_switch_to_deploy_for_every_out_indices(out_indices):
    """Stages after the last output do not run, and are switched all the
    same: exact outputs (float64), every norm but the four stage norms
    folded, and the structure of deploy=True."""
    eager = _eager(out_indices=out_indices).double()
    deployed = copy.deepcopy(eager)
    deployed.switch_to_deploy()
    left = [
        name for name, m in deployed.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    assert left == ['norm0', 'norm1', 'norm2', 'norm3']
    built = SAEViT(
        TINY_ARCH, out_indices=out_indices, deploy=True).double().eval()
    assert _structure(built) == _structure(deployed)
    x = torch.randn(2, 3, 64, 48, dtype=torch.float64)
    for a, b in zip(
            _outputs(deployed, x), _outputs(eager, x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def _parts_first(model: SAEViT) -> None:
    """Every module's switch_to_deploy, the innermost first (a CIFFN before
    its block, the backbone last)."""
    for module in reversed(list(model.modules())):
        if callable(getattr(module, 'switch_to_deploy', None)):
            module.switch_to_deploy()


def _probe_then_parts_first(model: SAEViT) -> None:
    """The conv -> BN pairs folded by a probe forward first (as
    ``saevit_mm.deploy.switch_to_deploy`` does for any model), then
    :func:`_parts_first`."""
    fold_conv_bn_pairs(model, probe_size=(64, 64))
    _parts_first(model)


@pytest.mark.parametrize('switch', [_parts_first, _probe_then_parts_first],
                         ids=['parts-first', 'probe-then-parts-first'])
@pytest.mark.parametrize('kwargs', CIFFN_CASES)
def test_switch_order_does_not_matter(kwargs, switch):
    """Switching the parts before their block (its pre-norm then folds
    into a CIFFN already in its deploy form) gives the eager outputs and
    the state dict of the outside-in switch."""
    eager = _eager(**kwargs).double()
    reference = copy.deepcopy(eager)
    reference.switch_to_deploy()
    model = copy.deepcopy(eager)
    with torch.no_grad():
        switch(model)
    assert model.deploy
    x = torch.randn(2, 3, 64, 48, dtype=torch.float64)
    for a, b in zip(_outputs(model, x), _outputs(eager, x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert_same_state(model.state_dict(), reference.state_dict())


def test_a_state_dict_of_the_other_form_is_refused():
    """mmengine loads non-strictly and only warns; the backbone says which
    form it needs instead."""
    eager, deployed = _eager(), _deployed()
    with pytest.raises(RuntimeError,
                       match=r'deployed SAEViT and the model is an eager '
                       r'one .* deploy=True'):
        eager.load_state_dict(deployed.state_dict(), strict=False)
    with pytest.raises(RuntimeError,
                       match=r'eager SAEViT and the model is a deployed '
                       r'one .*reparameterize_model\.py'):
        deployed.load_state_dict(_eager().state_dict(), strict=False)


def test_deploy_true_needs_a_batch_norm():
    with pytest.raises(ValueError, match='norm_cfg must be a BatchNorm'):
        SAEViT(
            TINY_ARCH, deploy=True, norm_cfg=dict(type='GN', num_groups=4))
