"""tools/analysis_tools/benchmark.py: interleaving, the classifier, --tiny."""
import importlib.util
import json

import pytest
import torch
from benchmark import MODELS, GAPLinearClassifier, interleave, main

pytestmark = pytest.mark.usefixtures('single_thread')


def test_interleave_rotates_order_and_isolates_failures():
    calls = []

    def make(name):

        def task():
            calls.append(name)
            if name == 'c':
                raise RuntimeError('broken\nsecond line')
            return float(len(calls))

        return task

    errors = {}
    out = interleave({n: make(n) for n in 'abc'}, 3, errors)
    # round 0: a b c; round 1 starts at b; round 2 at c (dropped)
    assert calls == ['a', 'b', 'c', 'b', 'a', 'a', 'b']
    assert out['a'] == dict(
        median=5.0, low=1.0, high=6.0, values=[1.0, 5.0, 6.0])
    assert set(out) == {'a', 'b'}
    assert errors == {'c': 'RuntimeError: broken'}
    with pytest.raises(RuntimeError):
        interleave({'c': make('c')}, 1)


@pytest.mark.parametrize('shape', [(2, 8, 5, 5), (2, 8, 9), (2, 8)])
def test_classifier_pools_any_last_output(shape):

    class Fixed(torch.nn.Module):

        def forward(self, x):
            return (torch.zeros(1), torch.ones(*shape))

    net = GAPLinearClassifier(Fixed(), 8, 10)
    assert net(torch.zeros(2, 3, 4, 4)).shape == (2, 10)


def test_every_model_has_a_published_top1_and_its_source():
    for name, (scope, _, top1, source) in MODELS.items():
        assert 60 < top1 < 90 and source, name


def test_benchmark_tiny_end_to_end(tmp_path, capsys):
    """--tiny: valid JSON, table and PNG; SAEViT eager and deployed."""
    models = ['SAEViT-t']
    for host, name in (('mmpretrain', 'ResNet-18'), ('timm', 'FastViT-T8')):
        if importlib.util.find_spec(host) is not None:
            models.append(name)
    main([
        '--tiny', '--no-progress', '--threads', '1', '--out-dir',
        str(tmp_path), '--models', *models
    ])
    result = json.loads((tmp_path / 'benchmark.json').read_text())
    rows = {row['name']: row for row in result['models']}
    assert list(rows) == [models[0], 'SAEViT-t [deployed]', *models[1:]]
    for row in rows.values():
        assert 'error' not in row, row
        assert row['params_m'] > 1 and row['gflops'] > 0
        for column in ('img/s', 'ms', '64x96'):
            assert row[column]['median'] > 0, (row['name'], column)
    deployed = rows['SAEViT-t [deployed]']
    assert deployed['max_abs_diff'] < 1e-3
    assert deployed['top1'] == rows['SAEViT-t']['top1'] == 76.3
    table = (tmp_path / 'benchmark.md').read_text().splitlines()
    assert sum(line.startswith('| ') for line in table) == 2 + len(rows)
    assert any(
        line.startswith('| SAEViT-t [deployed] | 76.3 |') for line in table)
    assert f'- SAEViT-t: {MODELS["SAEViT-t"][3]}' in table
    assert (tmp_path / 'benchmark.png').read_bytes().startswith(b'\x89PNG')
    assert '| SAEViT-t | 76.3 |' in capsys.readouterr().out


def test_unknown_model_is_refused_with_the_known_names(capsys):
    with pytest.raises(SystemExit):
        main(['--tiny', '--models', 'NoSuchNet'])
    assert 'SAEViT-t' in capsys.readouterr().err


def test_baseline_revision_runs_beside_todays_package(tmp_path):
    """--baseline REV: SAEViT as of REV, imported beside today's package
    (which keeps its root registry entry), eager and deployed in the same
    rounds, and the table of time ratios."""
    from mmengine.registry import MODELS as ROOT
    from mmengine.runner.checkpoint import CheckpointLoader

    from saevit_mm.models import SAEViT
    loaders = dict(CheckpointLoader._schemes)
    main([
        '--tiny', '--no-progress', '--threads', '1', '--out-dir',
        str(tmp_path), '--models', 'SAEViT-t', '--baseline', 'HEAD'
    ])
    assert ROOT.get('SAEViT') is SAEViT
    # checkpoints still load through today's package
    assert dict(CheckpointLoader._schemes) == loaders
    result = json.loads((tmp_path / 'benchmark.json').read_text())
    rows = {row['name']: row for row in result['models']}
    assert list(rows) == [
        'SAEViT-t', 'SAEViT-t [deployed]', 'SAEViT-t [@HEAD]',
        'SAEViT-t [@HEAD deployed]'
    ]
    for row in rows.values():
        assert 'error' not in row, row
        assert row['img/s']['median'] > 0 and row['gflops'] > 0
    assert rows['SAEViT-t [@HEAD deployed]']['max_abs_diff'] < 1e-3
    assert 'max_abs_diff' not in rows['SAEViT-t [@HEAD]']
    table = (tmp_path / 'benchmark.md').read_text()
    assert 'Time now / at `HEAD`' in table
    assert '| SAEViT-t | eager | ' in table
    assert '| SAEViT-t | deployed | ' in table


def test_unknown_baseline_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(['--tiny', '--models', 'SAEViT-t', '--baseline', 'no-such-rev'])
    assert "--baseline: 'no-such-rev' is not a commit" in \
        capsys.readouterr().err


def test_train_tiny_end_to_end(tmp_path):
    """--train --tiny: per model the step time, the bytes kept for
    backward (ratios to ResNet-18), the ops; the machine in the table."""
    models = ['SAEViT-t', 'ResNet-18']
    main([
        '--train', '--tiny', '--no-progress', '--threads', '1',
        '--out-dir', str(tmp_path), '--models', *models, '--baseline', 'HEAD'
    ])
    result = json.loads((tmp_path / 'benchmark_train.json').read_text())
    rows = {row['name']: row for row in result['models']}
    assert list(rows) == [*models, 'SAEViT-t [@HEAD]']
    for row in rows.values():
        assert 'error' not in row, row
        assert 0 < row['ops_forward'] < row['ops_train']
        size = row['sizes']['2x64x96']
        assert size['saved_bytes'] > 0 and size['ms']['median'] > 0
    table = (tmp_path / 'benchmark_train.md').read_text()
    assert f'{result["machine"]["cpu"]}, 1 threads' in table
    assert '| ResNet-18 | ' in table and '| 1.00 |' in table
    png = (tmp_path / 'benchmark_train.png').read_bytes()
    assert png.startswith(b'\x89PNG')
