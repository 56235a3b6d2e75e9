"""Deploy path: BN folding, ONNX export (+ onnxruntime), torch.compile,
reparameterized checkpoints (tools/model_converters/reparameterize_model.py
and tools/test.py with model.backbone.deploy=True)."""
import pytest
import torch
import torch.nn.functional as F
from e2e_utils import (DEMO_CONFIGS, TINY_OPTIONS, assert_finite,
                       demo_data_root, last_checkpoint, read_test_metrics,
                       run_tool, train_demo)
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from saevit_mm.deploy import (check_onnx, export_onnx, find_conv_bn_pairs,
                              fold_bn_into_next_conv_, switch_to_deploy)
from saevit_mm.models.layers import (CIFFN, SAEViTBlock,
                                     SparselyAggregatedAttention)
from saevit_mm.models.layers.saa import spread_cells

pytestmark = pytest.mark.usefixtures('single_thread')


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics, so a wrong fold cannot pass."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)


def _saevit(arch: str = 't', **kwargs) -> nn.Module:
    from saevit_mm.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(
        dict(type='SAEViT', arch=arch, out_indices=(0, 1, 2, 3), **kwargs))
    _randomize_bn(model)
    return model.eval()


class _Toy(nn.Module):
    """Fusable and non-fusable conv/BN patterns side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)  # fusable
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.act = nn.GELU()
        self.bn2 = nn.BatchNorm2d(8)  # after an activation: not fusable
        self.conv3 = nn.Conv2d(8, 8, 1)
        self.bn3 = nn.BatchNorm2d(8)  # conv3 output also feeds a residual
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2, groups=4)
        self.bn4 = nn.BatchNorm2d(8)  # fusable (transposed, grouped)
        self.conv5 = nn.Conv2d(8, 6, 1)
        self.bn5 = nn.BatchNorm2d(6)  # conv5 runs twice: not fusable

    def forward(self, x: torch.Tensor):
        x = self.bn1(self.conv1(x))
        x = self.bn2(self.act(self.conv2(x)))
        y = self.conv3(x)
        x = self.bn3(y) + y
        x = self.bn4(self.up(x))
        return x, self.bn5(self.conv5(x)) + self.conv5(x)


def test_fusion_pairs_follow_data_flow():
    model = _Toy().eval()
    _randomize_bn(model)
    pairs = find_conv_bn_pairs(model, torch.randn(1, 3, 8, 8))
    assert pairs == [('conv1', 'bn1'), ('up', 'bn4')]


def test_fusion_toy_outputs_unchanged():
    model = _Toy().eval()
    _randomize_bn(model)
    x = torch.randn(2, 3, 12, 10)
    with torch.no_grad():
        ref = model(x)
        folded = switch_to_deploy(model)
        out = model(x)
    assert folded == ['bn1', 'bn4']
    assert isinstance(model.bn1, nn.Identity)
    assert isinstance(model.bn2, nn.BatchNorm2d)
    for a, b in zip(ref, out):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    'shape', [(2, 3, 64, 64), (1, 3, 97, 131)], ids=['64x64', '97x131'])
@pytest.mark.parametrize('how', ['method', 'any-model'])
def test_switch_to_deploy_saevit_t_within_1e5(shape, how):
    """``SAEViT.switch_to_deploy()`` and ``saevit_mm.deploy.switch_to_deploy``
    (any model: folds, then lets the backbone switch itself) give the same
    form."""
    model = _saevit('t')
    x = torch.randn(*shape)
    with torch.no_grad():
        ref = model(x)
        if how == 'method':
            model.switch_to_deploy()
        else:
            assert switch_to_deploy(model, probe_size=shape[2:])
        out = model(x)
    assert model.deploy and not model.training
    left = [n for n, m in model.named_modules()
            if isinstance(m, nn.BatchNorm2d)]
    assert left == ['norm0', 'norm1', 'norm2', 'norm3']
    for a, b in zip(ref, out):
        assert a.shape == b.shape
        # 1e-5 relative as well as absolute: outputs reach ~4, where float32
        # rounding of the folded weights alone differs by ~2e-5 on some CPUs
        # (a wrong fold differs by orders of magnitude more)
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_switch_to_deploy_raises_on_a_norm_it_cannot_fold():
    """A GroupNorm does not fold: the backbone names the first one before
    it changes anything, instead of leaving a half-deployed model."""
    model = _saevit('t', norm_cfg=dict(type='GN', num_groups=4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match='stem.conv1.norm is a GroupNorm'):
        model.switch_to_deploy()
    assert not model.deploy
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.state_dict().keys() == before.keys()


@pytest.mark.parametrize('groups,kernel', [(1, 1), (2, 1), (8, 3), (4, 2)])
def test_pre_norm_folds_into_the_next_conv(groups, kernel):
    """conv(bn(x)) == conv'(x) for a conv without zero padding."""
    bn, conv = nn.BatchNorm2d(8), nn.Conv2d(8, 16, kernel, groups=groups)
    _randomize_bn(bn)
    bn.eval()
    x = torch.randn(2, 8, 9, 7)
    with torch.no_grad():
        ref = conv(bn(x))
        fold_bn_into_next_conv_(bn, conv)
        torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-5)


# small bounds, so that 64x64 probes below them and larger inputs sample
# coarser cells (the other code path) in every stage
SMALL_BOUNDS = (64, 64, 16, 4)


@pytest.mark.parametrize('shape', [(2, 3, 64, 64), (1, 3, 97, 131),
                                   (2, 3, 130, 70), (1, 3, 224, 224)],
                         ids=['64x64', '97x131', '130x70', '224'])
def test_deploy_folds_every_norm_but_the_stage_outputs(shape):
    """Probed once at 64x64, the deployed model equals eager at other sizes
    too, above the delegate bound included; only the four stage norms (read
    by the outputs and by a zero-padded downsampling) stay.

    Exact in float64 (1e-9); in float32 within 1e-5 of the output's scale
    (the folded weights round differently: 1.6e-5 was seen on an output of
    0.17 among outputs up to ~4; a wrong fold is off by ~1).
    """
    x = torch.randn(*shape)
    for dtype in (torch.float32, torch.float64):
        eager = _saevit('t', max_delegates=SMALL_BOUNDS).to(dtype)
        deployed = _saevit('t', max_delegates=SMALL_BOUNDS).to(dtype)
        deployed.switch_to_deploy()
        left = [n for n, m in deployed.named_modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert left == ['norm0', 'norm1', 'norm2', 'norm3']
        ffns = [m for m in deployed.modules() if isinstance(m, CIFFN)]
        blocks = [m for m in deployed.modules() if isinstance(m, SAEViTBlock)]
        assert all(
            isinstance(b.norm1, nn.Identity)
            and isinstance(b.norm2, nn.Identity) for b in blocks)
        assert deployed.stem.conv1.conv.weight.is_contiguous(
            memory_format=torch.channels_last)
        assert len(ffns) == 10 and all(
            f.deploy and f.dwconv.kernel_size == (9, 9)
            for f in ffns), 'every CIFFN has its merged deploy form'
        with torch.no_grad():
            pairs = zip(eager(x.to(dtype)), deployed(x.to(dtype)), strict=True)
            for a, b in pairs:
                if dtype == torch.float64:
                    torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9)
                else:
                    assert (a - b).abs().max() <= 1e-5 * max(
                        1., a.abs().max())


@pytest.mark.parametrize('hw', [(64, 64), (70, 90)], ids=['64x64', '70x90'])
def test_onnx_export_matches_onnxruntime(tmp_path, hw):
    pytest.importorskip('onnxruntime')
    model = _saevit('t')
    shape = (1, 3, *hw)
    path = tmp_path / 'saevit-t.onnx'
    names = export_onnx(model, shape, path)
    assert names == ['out0', 'out1', 'out2', 'out3']
    diffs = check_onnx(model, path, shape)
    for name in names:
        assert diffs[name] <= 1e-4 * max(1.0, diffs['max_abs_ref']), diffs


@pytest.mark.parametrize('merge_max_pixels', [CIFFN.MERGE_MAX_PIXELS, 0],
                         ids=['default', 'all-per-group'])
def test_onnx_export_of_fused_model(tmp_path, monkeypatch,
                                    merge_max_pixels):
    pytest.importorskip('onnxruntime')
    monkeypatch.setattr(CIFFN, 'MERGE_MAX_PIXELS', merge_max_pixels)
    model = _saevit('t')
    switch_to_deploy(model)
    path = tmp_path / 'fused.onnx'
    export_onnx(model, (1, 3, 64, 64), path)
    diffs = check_onnx(model, path, (1, 3, 64, 64))
    assert max(v for k, v in diffs.items() if k != 'max_abs_ref') <= 1e-4


@pytest.mark.slow
def test_torch_compile_matches_eager():
    model = _saevit('t')
    x = torch.randn(1, 3, 64, 64)
    compiled = torch.compile(model)
    with torch.no_grad():
        ref = model(x)
        out = compiled(x)
    for a, b in zip(ref, out):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


class _Ops(TorchDispatchMode):
    """Records the aten operators a forward calls (name, and for each
    convolution its kernel size and whether it is transposed)."""

    def __init__(self):
        super().__init__()
        self.names, self.convs, self.pointwise_groups = [], [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.names.append(name)
        if name == 'convolution':
            self.convs.append((tuple(args[1].shape[-2:]), args[6]))
            if tuple(args[1].shape[-2:]) == (1, 1):
                self.pointwise_groups.append(args[8])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize('channels_last', [False, True], ids=['NCHW', 'NHWC'])
@pytest.mark.parametrize('cell', [(1, 1), (2, 2), (4, 4), (2, 3), (4, 2),
                                  (1, 3)],
                         ids=str)
def test_spread_cells_is_the_depthwise_transposed_conv(channels_last, cell):
    """Square and oblong cells (per-axis pooling factors)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64).contiguous(
        memory_format=fmt)
    weight = torch.randn(6, 1, *cell, dtype=torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    for b in (bias, None):
        expected = F.conv_transpose2d(x, weight, b, stride=cell, groups=6)
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                out = spread_cells(x, weight, b)
            torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
            assert out.is_contiguous(memory_format=fmt)
    with pytest.raises(ValueError, match=r'depth-wise kernel of shape '
                       r'\(6, 1, s_h, s_w\), but got \(6, 2, 2, 2\)'):
        spread_cells(x, torch.randn(6, 2, 2, 2, dtype=torch.float64))


@pytest.mark.parametrize('size', [(32, 32), (29, 38), (70, 90)], ids=str)
@pytest.mark.parametrize('ratio', [4, 1])
def test_deployed_saa_recovers_without_a_transposed_conv(size, ratio):
    """Deploy form of SAA: above its delegate bound (larger cells) the
    recovery is a broadcast product, not a transposed conv; at the layer's
    own ratio (32x32 at ratio 4: 64 delegates) the recovery module runs."""
    saa = SparselyAggregatedAttention(
        16, 2, sample_ratio=ratio, max_delegates=64).eval().double()
    if saa.recovery is not None:
        with torch.no_grad():
            saa.recovery.weight.normal_()
    x = torch.randn(2, 16, *size, dtype=torch.float64)
    with torch.no_grad():
        expected = saa(x)
        switch_to_deploy(nn.Sequential(saa), probe_size=(16, 16))
        with _Ops() as ops:
            out = saa(x)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    assert saa.deploy
    above_bound = saa.cell_shape(*size) != (ratio, ratio)
    assert above_bound == (size != (32, 32) or ratio == 1)
    assert any(transposed for _, transposed in ops.convs) == (
        not above_bound and saa.recovery is not None), ops.convs


@pytest.mark.parametrize('batch,size,way', [(1, (8, 8), 'merged'),
                                            (2, (45, 45), 'merged'),
                                            (2, (46, 45), 'per-group'),
                                            (1, (65, 64), 'per-group'),
                                            (2, (46, 45), 'per-group-chunks')])
@pytest.mark.parametrize('redistribute', [True, False],
                         ids=['shuffle', 'no-shuffle'])
def test_deployed_ciffn_runs_each_kernel_on_large_maps(batch, size, way,
                                                       redistribute,
                                                       monkeypatch):
    """Deploy form of CIFFN: below MERGE_MAX_PIXELS one merged 9x9 conv
    and the projection as block products; from it up one group at a time
    with its own 3/5/7/9 kernel, its projection accumulated (dense columns,
    or block products from wide chunks when it is shuffled); never a
    hidden-width split or concatenation, nor a grouped 1x1 conv; exact
    either way (float64)."""
    if way == 'per-group-chunks':
        monkeypatch.setattr(CIFFN, 'CHUNK_MIN_WIDTH', 1)
    ffn = CIFFN(16, 4, redistribute=redistribute).double().eval()
    _randomize_bn(ffn)
    x = torch.randn(batch, 16, *size, dtype=torch.float64)
    with torch.no_grad():
        expected = ffn(x)
        switch_to_deploy(nn.Sequential(ffn), probe_size=size)
        with _Ops() as ops:
            out = ffn(x)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    kernels = sorted(k[0] for k, _ in ops.convs if k != (1, 1))
    assert kernels == ([9] if way == 'merged' else [3, 5, 7, 9]), ops.convs
    assert set(ops.pointwise_groups) == {1}, 'a grouped 1x1 convolution ran'
    copies = {'cat', 'stack', 'split', 'split_with_sizes', 'chunk'}
    assert not copies & set(ops.names), ops.names
    products = [n for n in ops.names if n.startswith(('addmm', 'baddbmm'))]
    if way == 'merged':
        assert products == ['baddbmm'], products
    elif way == 'per-group-chunks' and redistribute:
        assert products == ['baddbmm_'] * 4, products
    else:
        assert products == ['addmm'] + ['addmm_'] * 3, products
    assert (batch * size[0] * size[1] < CIFFN.MERGE_MAX_PIXELS) == \
        (way == 'merged')


@pytest.mark.parametrize('size', [(8, 8), (65, 64)],
                         ids=['merged', 'per-group'])
def test_deployed_ciffn_group_width_not_a_multiple_of_groups(
        size, monkeypatch):
    """A hidden width of 120 gives groups of 30 channels, which 4
    projection groups cannot read in equal chunks: the deploy form builds
    and stays exact (the chunked products need equal chunks; the dense
    columns serve)."""
    monkeypatch.setattr(CIFFN, 'CHUNK_MIN_WIDTH', 1)
    ffn = CIFFN(40, 3).double().eval()
    _randomize_bn(ffn)
    x = torch.randn(1, 40, *size, dtype=torch.float64)
    with torch.no_grad():
        expected = ffn(x)
        switch_to_deploy(nn.Sequential(ffn), probe_size=size)
        out = ffn(x)
        built = CIFFN(40, 3, deploy=True).double().eval()
        built.load_state_dict(ffn.state_dict())
        assert torch.equal(built(x), out)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


def test_deploy_activation_in_place_only_without_autograd():
    """CIFFN's deploy form runs GELU in place on a fresh convolution
    output under no_grad, out of place (so gradients flow) with autograd
    on."""
    layer = CIFFN(16, 3)
    layer.eval()
    _randomize_bn(layer)
    x = torch.randn(2, 16, 9, 9)
    with torch.no_grad():
        expected = layer(x)
    switch_to_deploy(nn.Sequential(layer), probe_size=(9, 9))
    with torch.no_grad(), _Ops() as ops:
        out = layer(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert 'gelu_' in ops.names and 'gelu' not in ops.names, ops.names
    x.requires_grad_(True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# -------------------------------------------------------------------------
# Reparameterized checkpoints: any host's config, then through the tools.

HOSTS = [
    pytest.param('cls', 'mmpretrain', marks=pytest.mark.cls, id='mmpretrain'),
    pytest.param('retinanet', 'mmdet', marks=pytest.mark.det, id='mmdet'),
    pytest.param('fpn', 'mmseg', marks=pytest.mark.seg, id='mmseg'),
]


@pytest.mark.parametrize('name,host', HOSTS)
def test_reparameterize_checkpoint_of_each_host(tmp_path, name, host):
    """A checkpoint of a cls, det or seg config becomes one that the same
    config with model.backbone.deploy=True loads strictly, with the eager
    backbone's outputs."""
    pytest.importorskip(f'{host}.models')
    from mmengine.config import Config

    from saevit_mm.deploy import build_model, reparameterize_checkpoint
    cfg = Config.fromfile(DEMO_CONFIGS[name])
    model = build_model(cfg).eval()
    _randomize_bn(model.backbone)
    path = tmp_path / 'eager.pth'
    dataset_meta = dict(classes=('a', 'b'))
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dataset_meta)), path)
    converted = reparameterize_checkpoint(cfg, str(path))
    assert converted['meta']['deploy'] is True
    assert converted['meta']['dataset_meta'] == dataset_meta
    assert converted['meta']['source'] == 'eager.pth'
    cfg.merge_from_dict({'model.backbone.deploy': True})
    deployed = build_model(cfg).eval()
    deployed.load_state_dict(converted['state_dict'])  # strict
    assert deployed.backbone.deploy
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        pairs = zip(deployed.backbone(x), model.backbone(x), strict=True)
        for out, ref in pairs:
            assert (out - ref).abs().max() <= 1e-5 * max(1., ref.abs().max())


@pytest.mark.slow
@pytest.mark.cls
def test_reparameterized_checkpoint_tests_like_the_eager_one(
        tmp_path_factory, tmp_path):
    """Train the demo classifier briefly, convert its checkpoint with
    tools/model_converters/reparameterize_model.py, and test both with
    tools/test.py: the deployed one (deploy=True) gives the same metric."""
    pytest.importorskip('mmpretrain.models')
    data_root = demo_data_root(tmp_path_factory)
    checkpoint = last_checkpoint(train_demo(tmp_path_factory, 'cls', 'cls'))
    config = DEMO_CONFIGS['cls']
    out = tmp_path / 'deploy' / 'saevit-t_demo_deploy.pth'
    run_tool(['tools/model_converters/reparameterize_model.py', config,
              checkpoint, out])
    saved = torch.load(out, map_location='cpu', weights_only=True)
    assert set(saved) == {'state_dict', 'meta'} and saved['meta']['deploy']
    assert 'backbone.stem.conv1.conv.bias' in saved['state_dict']
    # the classifier's scores, eager and deployed (the metric of a briefly
    # trained model could hide a difference)
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    from saevit_mm.deploy import build_model
    cfg = Config.fromfile(config)
    eager = build_model(cfg).eval()
    load_checkpoint(eager, str(checkpoint), strict=True, logger='silent')
    cfg.merge_from_dict({'model.backbone.deploy': True})
    deployed = build_model(cfg).eval()
    load_checkpoint(deployed, str(out), strict=True, logger='silent')
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            deployed(x, mode='tensor'),
            eager(x, mode='tensor'),
            rtol=1e-4,
            atol=1e-4)
    metrics = {}
    for form, path, options in (('eager', checkpoint, []),
                                ('deployed', out,
                                 ['model.backbone.deploy=True'])):
        work_dir = tmp_path / form
        run_tool([
            'tools/test.py', config, path, '--work-dir', work_dir,
            '--cfg-options', *TINY_OPTIONS['cls'], *options
        ],
                 data_root=data_root)
        metrics[form] = read_test_metrics(work_dir)
    keys = ['accuracy/top1', 'accuracy/top5']
    assert_finite(metrics['eager'], keys)
    assert {k: metrics['deployed'][k] for k in keys} == \
        {k: metrics['eager'][k] for k in keys}
