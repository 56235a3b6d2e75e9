"""tools/analysis_tools/op_profile.py: operator categories and stage rates."""
import importlib.util
from pathlib import Path

import pytest
import torch
from benchmark_utils.op_profile import (op_category, profile_categories,
                                        stage_profile)
from benchmark_utils.peers import GAPLinearClassifier
from torch import nn

from saevit_mm.models import SAEViT


@pytest.mark.parametrize('name,shapes,category', [
    ('aten::mkldnn_convolution', [[2, 8, 5, 5], [16, 8, 1, 1], [16]],
     'conv 1x1'),
    ('aten::mkldnn_convolution', [[2, 8, 5, 5], [8, 1, 9, 9], [8]],
     'conv depth-wise 9x9'),
    ('aten::mkldnn_convolution', [[2, 3, 9, 9], [8, 3, 3, 3], []],
     'conv 3x3'),
    ('aten::native_batch_norm', [[2, 8, 5, 5]], 'batchnorm'),
    ('aten::gelu_', [[2, 8]], 'gelu'),
    ('aten::_scaled_dot_product_flash_attention_for_cpu', [], 'attention'),
    ('aten::cat', [], 'copy/cat'),
    ('aten::addcmul', [], 'add/mul'),
    ('aten::avg_pool2d', [], 'pool'),
    ('aten::linear', [], 'other'),
])
def test_op_category(name, shapes, category):
    assert op_category(name, shapes) == category


def _tiny_classifier(tiny_arch):
    return GAPLinearClassifier(
        SAEViT(arch=tiny_arch, out_indices=(3, )),
        tiny_arch['embed_dims'][-1]).eval()


def test_profile_categories_split_the_forward(tiny_arch):
    model = _tiny_classifier(tiny_arch)
    times = profile_categories({'a': model, 'b': nn.Conv2d(3, 4, 1)},
                               torch.randn(2, 3, 64, 64),
                               rounds=1)
    assert set(times) == {'a', 'b'}
    assert {'conv 1x1', 'batchnorm', 'gelu', 'attention'} <= set(times['a'])
    assert set(times['b']) <= {'conv 1x1', 'other'}
    assert all(ms >= 0 for t in times.values() for ms in t.values())


def test_stage_profile_counts_every_stage(tiny_arch):
    model = _tiny_classifier(tiny_arch)
    x = torch.randn(2, 3, 64, 64)
    result = stage_profile({'a': model, 'conv': nn.Conv2d(3, 4, 1)}, x,
                           rounds=1)
    assert list(result) == ['a']  # a model without stages is left out
    stages = result['a']
    assert list(stages) == ['stem', 'stages.0', 'stages.1', 'stages.2',
                            'stages.3']
    assert all(s['ms'] > 0 and s['macs'] > 0 for s in stages.values())
    from saevit_mm.models.utils import count_complexity
    total = count_complexity(model, (3, 64, 64), batch_size=2)['flops']
    # the stem and stages hold all multiply-adds but those of the output
    # norm and the classifier head
    assert 0.95 * total <= sum(s['macs'] for s in stages.values()) < total
    assert not model.backbone.stages[0]._forward_hooks, 'hooks removed'


def test_op_profile_cli_runs(capsys, monkeypatch):
    path = Path(__file__).resolve().parents[1] / 'tools' / 'analysis_tools' \
        / 'op_profile.py'
    spec = importlib.util.spec_from_file_location('op_profile', path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    monkeypatch.setenv('COLUMNS', '200')  # rich: no wrapped headers
    cli.main(['--models', 'SAEViT-t', '--batch-size', '1', '--img-size',
              '64', '--rounds', '1', '--threads', '1'])
    out = capsys.readouterr().out
    assert 'SAEViT-t [deployed]' in out and 'eager and deploy' in out
    assert 'stages.3' in out and 'total' in out
    with pytest.raises(KeyError, match=r"unknown model\(s\) \['nope'\]"):
        cli.main(['--models', 'nope'])
