"""FLOP counting: the SDPA handle, a hand count of one SAA layer, the FLOP
bands of the variants and tools/analysis_tools/get_flops.py."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from benchmark import GAPLinearClassifier
from mmengine.analysis import FlopAnalyzer
from torch import nn

from saevit_mm.models import SAEViT
from saevit_mm.models.layers import SparselyAggregatedAttention
from saevit_mm.models.utils import (SDPA_OP, build_flop_analyzer,
                                    count_complexity)

REPO = Path(__file__).parents[1]
pytestmark = pytest.mark.usefixtures('single_thread')

#: Target multiply-adds of the 1000-class classifier at 224x224.
BANDS = {'t': (0.80e9, 0.03e9), 's': (1.30e9, 0.05e9)}


class SDPAttention(nn.Module):

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


class MatmulAttention(nn.Module):

    def forward(self, q, k, v):
        weights = (q @ k.transpose(-2, -1) * q.shape[-1]**-0.5).softmax(-1)
        return weights @ v


def test_sdpa_handle_counts_what_matmuls_count():
    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 14, 8), \
        torch.randn(2, 3, 14, 5)
    inputs = (q, k, v)
    torch.testing.assert_close(SDPAttention()(*inputs),
                               MatmulAttention()(*inputs))
    by_matmul = FlopAnalyzer(MatmulAttention(), inputs).total()
    assert by_matmul == 2 * 3 * 10 * 14 * (8 + 5)
    assert build_flop_analyzer(SDPAttention(), inputs).total() == by_matmul
    # what mmengine 0.10.7 does on its own: nothing, with a warning
    plain = FlopAnalyzer(SDPAttention(), inputs)
    plain.unsupported_ops_warnings(False)
    assert plain.total() == 0
    assert plain.unsupported_ops()[SDPA_OP] == 1


@pytest.mark.parametrize('norm_cfg', [None, dict(type='LN2d')],
                         ids=['no-norm', 'LN2d'])
def test_saa_layer_count_matches_hand_count(norm_cfg):
    B, C, heads, r, H, W = 2, 16, 2, 2, 7, 9
    saa = SparselyAggregatedAttention(
        C, heads, sample_ratio=r, norm_cfg=norm_cfg).eval()
    h, w = -(-H // r), -(-W // r)  # delegates of the edge-padded map: 4x5
    n = h * w
    coarse = -(-h // 2) * -(-w // 2)  # 2x coarser keys/values: 2x3
    d = C // heads
    hand = {
        # depth-wise r x r conv: C * r * r per delegate
        'sampler': B * C * r * r * n,
        # 1x1 conv C -> 3C on the delegates
        'attn.qkv': B * 3 * C * C * n,
        # q.k^T and attn.v: n queries x (n + coarse) keys, head dim d each
        'attn': B * heads * n * (n + coarse) * (d + d),
        # depth-wise transposed conv: r * r outputs per delegate and channel
        'recovery': B * C * r * r * n,
        # LayerNorm on the cropped map (mmengine: 5 per element, affine)
        'norm': 5 * B * C * H * W if norm_cfg else 0,
        # 1x1 projection on the cropped H x W map
        'proj': B * C * C * H * W,
    }
    analyzer = build_flop_analyzer(saa, (torch.randn(B, C, H, W), ))
    analyzer.unsupported_ops_warnings(False)
    by_module = analyzer.by_module()
    for name, flops in hand.items():
        if name == 'attn':  # the qkv conv and SDPA run inside attn
            assert by_module['attn'] - by_module['attn.qkv'] == flops
            assert analyzer.by_operator()[
                'scaled_dot_product_attention'] == flops
        else:
            assert by_module[name] == flops, name
    assert analyzer.total() == sum(hand.values()) == (
        111456 if norm_cfg else 111456 - 5 * B * C * H * W)


@pytest.mark.parametrize('arch', ['t', 's'])
def test_classifier_flops_in_band(arch):
    target, tolerance = BANDS[arch]
    backbone = SAEViT(arch)
    model = GAPLinearClassifier(backbone, backbone.out_channels[-1], 1000)
    result = count_complexity(model, (3, 224, 224))
    flops = result['flops']
    assert abs(flops - target) <= tolerance, f'{arch}: {flops / 1e9:.3f} G'
    attn = result['flops_by_op']['scaled_dot_product_attention']
    assert 0 < attn < 0.1 * flops


def test_count_complexity_restores_mode_and_counts_params():
    model = SAEViT(
        dict(
            embed_dims=(8, 16),
            depths=(1, 1),
            num_heads=(1, 2),
            sample_ratios=(2, 1),
            ffn_ratio=2)).train()
    result = count_complexity(model, (3, 32, 48), batch_size=2)
    assert model.training
    assert result['params'] == sum(p.numel() for p in model.parameters())
    single = count_complexity(model, (3, 32, 48))
    assert result['flops'] == 2 * single['flops']
    assert result['flops_by_op']['conv'] > 0


def test_get_flops_script(tmp_path):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            filter(None, [str(REPO), os.environ.get('PYTHONPATH')])),
        OMP_NUM_THREADS='1')
    proc = subprocess.run([
        sys.executable, 'tools/analysis_tools/get_flops.py', '--arch', 't',
        '--shape', '64', '96', '--json'
    ],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    backbone = next(r for r in rows if r['model'] == 'backbone')
    expected = count_complexity(SAEViT('t'), (3, 64, 96))
    assert backbone['input'] == '64x96'
    assert backbone['flops'] == expected['flops']
    assert backbone['params'] == expected['params']
    assert backbone['attn_flops'] == expected['flops_by_op'][
        'scaled_dot_product_attention']
    classifier = next(r for r in rows if r['model'].startswith('classifier'))
    # GAP over the 2x3 map (additions, not counted), then 384 -> 1000
    assert classifier['flops'] - backbone['flops'] == 384 * 1000
    assert classifier['params'] - backbone['params'] == 385 * 1000
    assert classifier['attn_flops'] == backbone['attn_flops']


def test_get_flops_script_compares_delegate_bounds(capsys):
    """One row per (size, bound), each the backbone's count at that bound."""
    script = _load_script()
    script.main([
        '--arch', 't', '--backbone-only', '--sizes', '96x160', '--json',
        '--max-delegates', 'none', '8'
    ])
    rows = json.loads(capsys.readouterr().out)
    assert [(r['input'], r['max_delegates'], r['model']) for r in rows] == [
        ('96x160', 'none', 'backbone'), ('96x160', '8', 'backbone')
    ]
    for row, bound in zip(rows, (None, 8), strict=True):
        expected = count_complexity(
            SAEViT('t', max_delegates=bound), (3, 96, 160))
        assert row['flops'] == expected['flops']
    assert rows[1]['attn_flops'] < rows[0]['attn_flops']


def _load_script():
    path = REPO / 'tools' / 'analysis_tools' / 'get_flops.py'
    spec = importlib.util.spec_from_file_location('get_flops', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_get_flops_script_arguments(capsys):
    script = _load_script()
    assert script.canonical_archs() == ['t', 's']
    args = script.parse_args(['--shape', '97', '--cfg-options',
                              'attn_type=mhsa'])
    assert args.shape == [97, 97] and args.arch == ['t', 's']
    assert args.cfg_options == dict(attn_type='mhsa')
    args = script.parse_args(
        ['--sizes', '224', '800x1333', '--max-delegates', 'none', '1024'])
    assert args.sizes == [[224, 224], [800, 1333]]
    assert args.max_delegates == [None, 1024]
    for bad in (['--sizes', '8x'], ['--max-delegates', '0'],
                ['--max-delegates', '8', '--cfg-options', 'max_delegates=4']):
        with pytest.raises(SystemExit):
            script.parse_args(bad)
    for bad in (['--shape', '1', '2', '3'], ['--shape', '0']):
        with pytest.raises(SystemExit) as exc:
            script.parse_args(bad)
        assert exc.value.code == 2
        assert 'one or two positive ints' in capsys.readouterr().err
