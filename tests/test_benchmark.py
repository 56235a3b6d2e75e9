"""The benchmark: statistics, fits, and one tiny end-to-end run."""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from benchmark_utils.accuracy import (MetafileTop1, PaperTop1,
                                      read_metafile_top1, resolve_top1)
from benchmark_utils.attention_scaling import fit_exponent
from benchmark_utils.peers import (TIMM_SPECS, GAPLinearClassifier,
                                   build_backbone, default_specs)
from benchmark_utils.report import accuracy_points, plot_accuracy_panel
from benchmark_utils.runner import PRESETS, BenchmarkSettings, run_benchmark
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


def test_default_preset_times_the_backbones_at_1024x2048():
    assert PRESETS['default'].backbone_sizes == ((512, 512), (800, 1333),
                                                 (1024, 2048))
    for preset in ('quick', 'tiny'):
        assert max(h * w for h, w in PRESETS[preset].backbone_sizes) <= 512**2


def _metafile_specs():
    return [s for s in default_specs() if isinstance(s.top1, MetafileTop1)]


@pytest.mark.parametrize('spec', _metafile_specs(), ids=lambda s: s.name)
def test_metafile_top1_is_the_number_in_the_file(spec):
    """The reader returns what the installed metafile holds for the entry."""
    ref = spec.top1
    package = pytest.importorskip(ref.package)
    path = Path(package.__file__).parent / ref.metafile
    entries = [
        m for m in yaml.safe_load(path.read_text())['Models']
        if m['Name'] == ref.entry
    ]
    assert len(entries) == 1, f'{ref.entry} in {path}: {len(entries)}'
    expected = [
        r['Metrics']['Top 1 Accuracy'] for r in entries[0]['Results']
        if r['Dataset'] == 'ImageNet-1k'
    ]
    assert len(expected) == 1
    assert read_metafile_top1(ref.package, ref.metafile,
                              ref.entry) == expected[0]


def test_metafile_reader_picks_the_entry_and_dataset(tmp_path, monkeypatch):
    """Other entries and other datasets of the same entry are not read."""
    meta = tmp_path / 'fakehost' / '.mim' / 'configs' / 'net' / 'metafile.yml'
    meta.parent.mkdir(parents=True)
    (tmp_path / 'fakehost' / '__init__.py').write_text('')
    meta.write_text(
        yaml.safe_dump(
            dict(Models=[
                dict(
                    Name='net-a',
                    Results=[
                        dict(
                            Dataset='ImageNet-1k',
                            Metrics={'Top 1 Accuracy': 11.5})
                    ]),
                dict(
                    Name='net-b',
                    Results=[
                        dict(
                            Dataset='CIFAR-10',
                            Metrics={'Top 1 Accuracy': 99.0}),
                        dict(
                            Dataset='ImageNet-1k',
                            Metrics={
                                'Top 5 Accuracy': 90.0,
                                'Top 1 Accuracy': 72.25
                            })
                    ]),
                dict(
                    Name='net-c',
                    Results=[
                        dict(
                            Dataset='CIFAR-10',
                            Metrics={'Top 1 Accuracy': 95.0})
                    ]),
            ])))
    monkeypatch.syspath_prepend(str(tmp_path))
    rel = '.mim/configs/net/metafile.yml'
    ref = MetafileTop1('fakehost', rel, 'net-b')
    assert resolve_top1(ref) == dict(
        top1=72.25,
        top1_source=f'fakehost/{rel}: net-b (ImageNet-1k Top 1 Accuracy)')
    with pytest.raises(KeyError, match='net-a'):  # lists the entries
        read_metafile_top1('fakehost', rel, 'net-x')
    with pytest.raises(KeyError, match='no ImageNet-1k'):
        read_metafile_top1('fakehost', rel, 'net-c')
    with pytest.raises(ModuleNotFoundError):
        read_metafile_top1('no_such_host_pkg', rel, 'net-b')


def test_every_default_model_has_a_published_top1_and_source():
    for spec in default_specs():
        assert isinstance(spec.top1, (MetafileTop1, PaperTop1)), spec.name
        if isinstance(spec.top1, MetafileTop1):
            pytest.importorskip(spec.top1.package)
            assert spec.top1.entry in resolve_top1(spec.top1)['top1_source']
        else:  # a paper constant names its arXiv id
            assert 'arXiv' in spec.top1.citation, spec.name
        row = resolve_top1(spec.top1)
        assert 60 < row['top1'] < 90 and row['top1_source'], spec.name


@pytest.mark.parametrize('name', ['FastViT-T8', 'RepViT-M0.9'])
def test_timm_peers_are_measured_reparameterised(name):
    """Fewer parameters than the training form, the same function."""
    timm = pytest.importorskip('timm')
    spec, = default_specs([name])
    torch.manual_seed(0)
    deployed = build_backbone(spec)
    torch.manual_seed(0)
    trained = timm.create_model(
        spec.cfg['model'],
        pretrained=False,
        features_only=True,
        out_indices=(-1, )).eval()
    count = sum(p.numel() for p in deployed.parameters())
    assert count < sum(p.numel() for p in trained.parameters())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(
            deployed(x)[-1], trained(x)[-1], rtol=1e-4, atol=1e-4)


def test_timm_peers_run_the_tiny_preset():
    """Every timm peer builds, is timed, and runs at a non-square size."""
    pytest.importorskip('timm')
    names = [s.name for s in TIMM_SPECS]
    settings = BenchmarkSettings(
        **{
            **PRESETS['tiny'].__dict__, 'models': names,
            'attention_sizes': (),
            'deploy': ()
        })
    rows = {r['name']: r for r in run_benchmark(settings)['models']}
    assert list(rows) == names
    for name, row in rows.items():
        assert 'error' not in row, row
        assert row['scope'] == 'timm' and row['top1'] > 70
        assert row['throughput']['median'] > 0
        assert row['backbone_latency_ms']['64x96']['median'] > 0
    assert 'reparameterize_model' in rows['FastViT-T8']['source']
    assert 'no deploy form' in rows['EfficientViT-B1']['source']


def test_missing_timm_skips_its_peers_with_a_reason(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'timm', None)  # import timm fails
    settings = BenchmarkSettings(
        models=['FastViT-T8'], attention_sizes=(), deploy=())
    from benchmark_utils.runner import _Run
    run = _Run(settings, None)
    run.build()
    row = run.rows['FastViT-T8']
    assert row['error'].startswith(
        'ModuleNotFoundError') and 'timm' in row['error']
    assert row['top1'] == 76.2 and not run.models


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
    # published top-1: in the JSON rows (variants inherit it), the
    # markdown table and its source list, and the accuracy panel
    assert (ours['top1'], fused['top1']) == (76.3, 76.3)
    assert '2508.16884' in ours['top1_source']
    assert fused['top1_source'] == ours['top1_source']
    assert all('top1' in r and r['top1_source'] for r in result['models'])
    assert 'IN-1k top-1 % (published)' in rows_md[0]
    assert rows_md[2].startswith('| SAEViT-t | 76.3 |')
    assert f'- SAEViT-t: {ours["top1_source"]}' in table
    names = [p['name'] for p in accuracy_points(result)]
    assert names == [r['name'] for r in result['models']]
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    labels = plot_accuracy_panel(ax, result)
    plt.close(fig)
    assert [(x, y) for x, y, _ in labels] == [
        (r['throughput']['median'], r['top1']) for r in result['models']
    ]
    assert 'top-1' in ax.get_ylabel() and 'img/s' in ax.get_xlabel()


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
