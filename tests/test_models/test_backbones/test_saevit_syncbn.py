"""SAEViT with mmcv's ``MMSyncBN`` (``mmcv.ops.SyncBatchNorm``).

``MMSyncBN`` is no torch ``_BatchNorm``; init, ``norm_eval``,
``frozen_stages``, the batch-size check and the deploy fold must treat it as
a batch norm all the same (:class:`AnyBatchNorm`).

Building one needs a process group (it reads the world size), so the tests
run in a gloo group of one process. mmcv has no CPU kernel for its
training-mode forward (``sync_bn_forward_mean_impl: implementation for
device cpu not found``); in eval mode it runs ``F.batch_norm`` with the
running statistics, which is what these tests run.
"""
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from torch import nn

from saevit_mm.deploy import switch_to_deploy
from saevit_mm.models import SAEViT
from saevit_mm.models.utils.backbone_utils import (AnyBatchNorm, is_norm,
                                                   normalizes_with_local_batch)
from .utils import TINY_ARCH

mmcv_ops = pytest.importorskip(
    'mmcv.ops', reason='MMSyncBN needs mmcv built with its ops')
MMSyncBN = mmcv_ops.SyncBatchNorm

ALL_STAGES = (0, 1, 2, 3)


@pytest.fixture(scope='module', autouse=True)
def process_group(tmp_path_factory):
    """A gloo process group of one process (rank 0), destroyed after."""
    if dist.is_initialized():
        pytest.skip('a process group already exists in this process')
    store = tmp_path_factory.mktemp('gloo') / 'store'
    dist.init_process_group(
        'gloo', init_method=f'file://{store}', rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _saevit(**kwargs) -> SAEViT:
    """The tiny SAEViT with MMSyncBN as every norm."""
    model = SAEViT(
        TINY_ARCH,
        out_indices=ALL_STAGES,
        norm_cfg=dict(type='MMSyncBN'),
        **kwargs)
    plain = SAEViT(TINY_ARCH, out_indices=ALL_STAGES, **kwargs)
    names = [n for n, m in model.named_modules() if isinstance(m, MMSyncBN)]
    assert names == [
        n for n, m in plain.named_modules() if isinstance(m, nn.BatchNorm2d)
    ]
    return model


def _sync_bns(module: nn.Module):
    return [m for m in module.modules() if isinstance(m, MMSyncBN)]


def _randomize(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial statistics and affine weights in every batch norm."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, MMSyncBN)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)


def test_mmsyncbn_is_a_batch_norm():
    sync_bn = MMSyncBN(4)
    assert isinstance(sync_bn, AnyBatchNorm) and is_norm(sync_bn)
    for layer in (nn.BatchNorm2d(4), nn.SyncBatchNorm(4)):
        assert isinstance(layer, AnyBatchNorm)
    for layer in (nn.GroupNorm(2, 4), nn.LayerNorm(4), nn.Conv2d(4, 4, 1)):
        assert not isinstance(layer, AnyBatchNorm)
    # statistics of one process: BN and an MMSyncBN of a group of one
    assert normalizes_with_local_batch(nn.BatchNorm2d(4))
    assert normalizes_with_local_batch(sync_bn)
    assert not normalizes_with_local_batch(nn.SyncBatchNorm(4))
    assert not normalizes_with_local_batch(sync_bn.eval())
    sync_bn.train().group_size = 2  # as in a group of two processes
    assert not normalizes_with_local_batch(sync_bn)


def test_init_weights_sets_every_mmsyncbn_to_identity():
    """mmcv draws gamma uniformly in [0, 1); our init sets 1 and 0."""
    model = _saevit()
    for p in model.parameters():
        nn.init.constant_(p, 5.)
    model.init_weights()
    for m in _sync_bns(model):
        assert torch.equal(m.weight, torch.ones_like(m.weight))
        assert torch.equal(m.bias, torch.zeros_like(m.bias))


def test_norm_eval_keeps_every_mmsyncbn_in_eval():
    model = _saevit(norm_eval=True)
    _randomize(model)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        expected = model.eval()(x)
    model.train()
    assert model.stages[0].training
    assert all(not m.training for m in _sync_bns(model))
    stats = [b.clone() for m in _sync_bns(model) for b in m.buffers()]
    outs = model(x)
    for a, b in zip(outs, expected, strict=True):
        torch.testing.assert_close(a, b)
    after = [b for m in _sync_bns(model) for b in m.buffers()]
    for before, now in zip(stats, after, strict=True):
        assert torch.equal(before, now)


def test_frozen_stages_freeze_the_mmsyncbn_of_the_stem_and_stage_0():
    model = _saevit(frozen_stages=1).train()
    frozen = [model.stem, model.stages[0], model.norm0]
    frozen_bns = {m for f in frozen for m in _sync_bns(f)}
    assert frozen_bns
    for m in _sync_bns(model):
        is_frozen = m in frozen_bns
        assert m.training != is_frozen
        assert all(p.requires_grad != is_frozen for p in m.parameters())


def test_single_image_at_the_smallest_size_is_refused():
    """In a group of one process an MMSyncBN of the last stage would see
    one value per channel (mmcv then outputs the bias silently)."""
    model = _saevit().train()
    with pytest.raises(ValueError, match='A batch of 1 image of 32x32'):
        model(torch.rand(1, 3, 32, 32))


def test_deploy_folds_mmsyncbn_like_bn():
    """The same norms fold as with BN (all but the four stage outputs), and
    the deployed model computes the eager model's eval outputs."""
    model = _saevit()
    _randomize(model)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        expected = model.eval()(x)
        folded = switch_to_deploy(model, probe_size=(64, 64))
        outs = model(x)
    plain = SAEViT(TINY_ARCH, out_indices=ALL_STAGES)
    assert folded == switch_to_deploy(plain, probe_size=(64, 64))
    left = [n for n, m in model.named_modules() if isinstance(m, MMSyncBN)]
    assert left == ['norm0', 'norm1', 'norm2', 'norm3']
    for a, b in zip(outs, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_import_saevit_mm_does_not_import_mmcv_ops():
    """Recognising MMSyncBN must not load mmcv's compiled ops."""
    code = 'import sys, saevit_mm; print("mmcv.ops" in sys.modules)'
    out = subprocess.run([sys.executable, '-c', code],
                         capture_output=True,
                         text=True,
                         check=True)
    assert out.stdout.strip() == 'False', out.stderr
