"""The benchmark: statistics, fits, and one tiny end-to-end run."""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from benchmark_utils.attention_scaling import fit_exponent
from benchmark_utils.peers import GAPLinearClassifier, default_specs
from benchmark_utils.timing import interleave, summarize

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures('single_thread')


def test_summarize_median_range_iqr():
    stats = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (stats.median, stats.low, stats.high) == (3.0, 1.0, 5.0)
    assert stats.iqr == pytest.approx(2.0)
    assert stats.rel_spread == pytest.approx(4.0 / 3.0)
    assert summarize([7.0]).iqr == 0.0
    with pytest.raises(ValueError):
        summarize([])


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
    out = interleave({n: make(n) for n in 'abc'}, 3, errors=errors)
    # round 0: a b c; round 1 starts at b; round 2 at c (dropped after
    # its failure in round 0)
    assert calls == ['a', 'b', 'c', 'b', 'a', 'a', 'b']
    assert set(out) == {'a', 'b'} and len(out['a']) == 3
    assert errors == {'c': 'RuntimeError: broken'}
    with pytest.raises(RuntimeError):
        interleave({'c': make('c')}, 1)


@pytest.mark.parametrize('power', [1.0, 2.0, 0.5])
def test_fit_exponent_recovers_power_law(power):
    xs = [64.0, 256.0, 1024.0, 4096.0]
    ys = [3.0 * x**power for x in xs]
    assert fit_exponent(xs, ys) == pytest.approx(power)
    assert fit_exponent([1.0], [1.0]) is None


@pytest.mark.parametrize('shape', [(2, 8, 5, 5), (2, 8, 9), (2, 8)])
def test_classifier_pools_any_last_output(shape):

    class Fixed(torch.nn.Module):

        def forward(self, x):
            return (torch.zeros(1), torch.ones(*shape))

    net = GAPLinearClassifier(Fixed(), 8, 10)
    assert net(torch.zeros(2, 3, 4, 4)).shape == (2, 10)


def test_default_specs_filter_and_error():
    assert [s.name for s in default_specs(['saevit-t'])] == ['SAEViT-t']
    with pytest.raises(KeyError, match='known'):
        default_specs(['NoSuchNet'])


def _load_cli():
    spec = importlib.util.spec_from_file_location(
        'benchmark_cli', ROOT / 'tools/analysis_tools/benchmark.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_tiny_end_to_end(tmp_path):
    """--tiny: one tiny size, one repeat; valid JSON, PNG and markdown."""
    models = ['SAEViT-t']
    if importlib.util.find_spec('mmpretrain') is not None:
        models.append('ResNet-18')
    _load_cli().main([
        '--tiny', '--no-progress', '--threads', '1', '--out-dir',
        str(tmp_path), '--models', *models
    ])
    result = json.loads((tmp_path / 'benchmark.json').read_text())
    assert result['preset'] == 'tiny'
    assert result['matmul_gflops']['median'] > 0
    rows = {r['name']: r for r in result['models']}
    ours = rows['SAEViT-t']
    assert 'error' not in ours, ours
    assert ours['params_m'] > 1 and ours['gflops'] > 0
    assert ours['throughput']['median'] > 0
    assert ours['latency_ms']['median'] > 0
    assert ours['backbone_latency_ms']['64x96']['median'] > 0
    assert 0 < ours['flop_utilisation'] < 10
    fused = rows['SAEViT-t [fused]']
    assert fused['variant_of'] == 'SAEViT-t'
    assert result['deploy']['SAEViT-t']['fuse']['max_abs_diff'] <= 1e-4
    point = result['attention']['points'][0]
    assert point['size'] == 64 and point['saa']['ms'] > 0
    assert math.isfinite(point['full']['ms'])
    png = (tmp_path / 'benchmark.png').read_bytes()
    assert png.startswith(b'\x89PNG\r\n\x1a\n')
    import matplotlib.image
    assert matplotlib.image.imread(tmp_path / 'benchmark.png').ndim == 3
    table = (tmp_path / 'benchmark.md').read_text().splitlines()
    rows_md = [line for line in table if line.startswith('| ')]
    assert len(rows_md) == 2 + len(result['models'])
    assert any(line.startswith('Medians over 1 interleaved') for line in table)


def test_benchmark_tiny_channels_last_onnx(tmp_path):
    """The channels_last switch and the onnxruntime variant run end to end."""
    pytest.importorskip('onnxruntime')
    _load_cli().main([
        '--tiny', '--no-progress', '--threads', '1', '--channels-last',
        '--attention-sizes', '--deploy', 'fuse', 'onnx', '--models',
        'SAEViT-t', '--out-dir',
        str(tmp_path)
    ])
    result = json.loads((tmp_path / 'benchmark.json').read_text())
    assert result['settings']['channels_last'] is True
    assert 'attention' not in result
    onnx = result['deploy']['SAEViT-t']['onnx']
    assert onnx['max_abs_diff'] <= 1e-4, onnx
    rows = {r['name']: r for r in result['models']}
    ort = rows['SAEViT-t [onnxruntime]']
    assert ort['latency_ms']['median'] > 0 and 'throughput' not in ort
    assert (tmp_path / 'benchmark.png').stat().st_size > 0
