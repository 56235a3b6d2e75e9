"""The ablation / peer sweep: its configs, its resume logic and a smoke run."""
import json
import re

import pytest
import torch
from e2e_utils import REPO, demo_data_root, run_tool
from mmengine.config import Config

import ablation
from ablation import (ARMS, DEMO_CONFIG, DEMO_DENSE_CONFIG, Arm,
                      choose_dense_arms, run_one, select_arms)

#: What each arm may change in the demo config it inherits: the backbone
#: (SAEViT arms: only their ablation switch), and what the backbone's output
#: forces (the head's input width; EdgeNeXt pools itself, so no neck).
ALLOWED = {
    'SAA -> full attention': [r'^model\.backbone\.attn_type$'],
    'CIFFN -> plain FFN': [r'^model\.backbone\.ffn_type$'],
    'CIFFN without redistribution': [r'^model\.backbone\.ffn_type$'],
    'SAA recovery: no norm -> LN2d':
    [r'^model\.backbone\.recovery_norm_cfg(\.|$)'],
    'no DWSConv': [r'^model\.backbone\.use_dwsconv$'],
    'EdgeNeXt-xsmall': [
        r'^model\.backbone\.', r'^model\.neck(\.|$)',
        r'^model\.head\.in_channels$'
    ],
    'MobileViT-x_small':
    [r'^model\.backbone\.', r'^model\.head\.in_channels$'],
    'ResNet-18': [r'^model\.backbone\.', r'^model\.head\.in_channels$'],
}
#: What a dense arm may change in the Semantic FPN demo config: the backbone
#: and the widths of its outputs that the neck takes.
DENSE_ALLOWED = [r'^model\.backbone\.', r'^model\.neck\.in_channels\.']
DENSE_ARMS = [
    a for a in ARMS if a.dense_config not in (None, DEMO_DENSE_CONFIG)
]


def _flatten(node, prefix=''):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _flatten(value, f'{prefix}{key}.')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _flatten(value, f'{prefix}{i}.')
    else:
        yield prefix[:-1], node


def test_every_arm_config_exists_and_every_config_is_an_arm():
    shipped = {
        str(p.relative_to(REPO))
        for p in (REPO / 'configs' / 'ablation').glob('*.py')
    }
    assert shipped == ({arm.config
                        for arm in ARMS} | {
                            arm.dense_config
                            for arm in ARMS if arm.dense_config
                        }) - {DEMO_CONFIG, DEMO_DENSE_CONFIG}
    dense = {a.name for a in ARMS if a.dense_config}
    expected = {a.name for a in ARMS if a.kind in ('saevit', 'peer')}
    assert dense == expected | {'CIFFN -> plain FFN'
                                }, 'SAEViT-t, CIFFN -> FFN, every peer'
    assert set(ALLOWED) == {arm.name for arm in ARMS} - {'SAEViT-t'}


def _changed_keys(base: str, config: str):
    base_cfg = dict(_flatten(Config.fromfile(str(REPO / base)).to_dict()))
    cfg = dict(_flatten(Config.fromfile(str(REPO / config)).to_dict()))
    return sorted(k for k in base_cfg.keys() | cfg.keys()
                  if base_cfg.get(k) != cfg.get(k))


@pytest.mark.parametrize(
    'arm', [a for a in ARMS if a.config != DEMO_CONFIG], ids=lambda a: a.slug)
def test_arm_changes_only_the_backbone(arm):
    """Same data, recipe, schedule, head and seed handling as the demo."""
    changed = _changed_keys(DEMO_CONFIG, arm.config)
    assert changed, 'an arm must change something'
    unexpected = [
        k for k in changed
        if not any(re.search(r, k) for r in ALLOWED[arm.name])
    ]
    assert not unexpected, f'{arm.name} also changes {unexpected}'


@pytest.mark.parametrize('arm', DENSE_ARMS, ids=lambda a: a.slug)
def test_dense_arm_changes_only_the_backbone(arm):
    """Same data, recipe, schedule, neck and head as the FPN demo."""
    changed = _changed_keys(DEMO_DENSE_CONFIG, arm.dense_config)
    if arm.kind == 'ablation':
        # the same switch as its classification arm, nothing else
        assert changed == _changed_keys(DEMO_CONFIG, arm.config)
        return
    assert any(k.startswith('model.neck.in_channels') for k in changed)
    unexpected = [
        k for k in changed if not any(re.search(r, k) for r in DENSE_ALLOWED)
    ]
    assert not unexpected, f'{arm.name} also changes {unexpected}'


@pytest.mark.cls
@pytest.mark.parametrize('arm', ARMS, ids=lambda a: a.slug)
def test_arm_builds_and_classifies_a_demo_image(arm):
    pytest.importorskip('mmpretrain.models')
    model = ablation.build_model(arm.config)
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 10)


@pytest.mark.parametrize(
    'arm', [a for a in DENSE_ARMS if a.kind == 'peer'], ids=lambda a: a.slug)
def test_dense_backbone_is_the_classification_backbone(arm):
    """The peer's segmenter backbone takes its classifier's arguments; only
    what multi-scale outputs and the initialisation need differs."""
    cls = Config.fromfile(str(REPO / arm.config)).model.backbone.to_dict()
    dense = Config.fromfile(str(REPO / arm.dense_config)).model.backbone
    dense = dense.to_dict()
    changed = {
        k
        for k in cls.keys() | dense.keys() if cls.get(k) != dense.get(k)
    }
    assert changed <= {
        'out_indices', 'gap_before_final_norm', 'init_cfg', 'norm_cfg'
    }, changed
    assert dense['init_cfg']['prefix'] == 'backbone.'


@pytest.mark.seg
@pytest.mark.parametrize(
    'arm', [a for a in ARMS if a.dense_config], ids=lambda a: a.slug)
def test_dense_arm_starts_from_its_whole_classifier(arm, tmp_path):
    """Every backbone weight of the arm's classifier initialises its
    segmenter (what ablation.py passes as init_cfg.checkpoint), and the
    segmenter predicts the demo classes."""
    pytest.importorskip('mmpretrain.models')
    pytest.importorskip('mmseg.models')
    classifier = ablation.build_model(arm.config)
    checkpoint = tmp_path / 'classifier.pth'
    torch.save({'state_dict': classifier.state_dict()}, checkpoint)
    cfg = Config.fromfile(str(REPO / arm.dense_config))
    cfg.merge_from_dict(
        {'model.backbone.init_cfg.checkpoint': str(checkpoint)})
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.default_scope)
    segmenter = MODELS.build(cfg.model)
    segmenter.init_weights()
    dense = segmenter.backbone.state_dict()
    weights = {
        k[len('backbone.'):]: v
        for k, v in classifier.state_dict().items()
        if k.startswith('backbone.') and v.dtype.is_floating_point
    }
    assert weights.keys() <= dense.keys()
    differ = [k for k, v in weights.items() if not torch.equal(dense[k], v)]
    assert not differ, f'not loaded from the classifier: {differ[:5]}'
    segmenter.eval()
    with torch.no_grad():
        logits = segmenter(torch.rand(1, 3, 128, 128))
    assert logits.shape == (1, 7, 32, 32)


def test_dense_arms_are_saevit_and_the_best_peer():
    top1 = {
        'EdgeNeXt-xsmall': 50.,
        'MobileViT-x_small': 55.,
        'ResNet-18': 40.,
        'SAEViT-t': 52.
    }
    assert [a.name for a in choose_dense_arms(ARMS, top1)
            ] == ['SAEViT-t', 'CIFFN -> plain FFN', 'MobileViT-x_small']
    assert [a.name for a in choose_dense_arms(ARMS, top1, 'resnet-18')
            ] == ['SAEViT-t', 'CIFFN -> plain FFN', 'ResNet-18']
    with pytest.raises(KeyError, match='not a peer; peers: .*ResNet-18'):
        choose_dense_arms(ARMS, top1, 'no DWSConv')
    assert [a.name for a in choose_dense_arms(ARMS[:2], top1)] == ['SAEViT-t']


def test_dense_peer_must_be_trained(capsys):
    with pytest.raises(SystemExit):
        ablation.parse_args(
            ['--arms', 'SAEViT-t', '--dense-peer', 'ResNet-18'])
    assert 'add it to --arms' in capsys.readouterr().err
    args = ablation.parse_args(
        ['--arms', 'SAEViT-t', 'ResNet-18', '--dense-peer', 'resnet-18'])
    assert [a.name for a in args.arm_list] == ['SAEViT-t', 'ResNet-18']


def test_unknown_arm_is_refused_with_the_known_names():
    with pytest.raises(KeyError, match='known: .*ResNet-18'):
        select_arms(['ResNet-50'])
    assert [a.name for a in select_arms(['resnet-18', 'SAEViT-t'])
            ] == ['ResNet-18', 'SAEViT-t']


def _no_runs(monkeypatch):
    """Make ``ablation`` fail on any run, recording what it would run."""
    lanes = []

    def no_run(lanes_, *args, **kwargs):
        step = next(lanes_['run'])
        lanes.append(step)
        raise AssertionError(f'ran {step.name}')

    monkeypatch.setattr(ablation, 'run_lanes', no_run)
    return lanes


def test_a_finished_run_is_read_not_run_again(tmp_path, monkeypatch):
    _no_runs(monkeypatch)
    arm = ARMS[-1]
    out = tmp_path / arm.slug / 'seed3'
    out.mkdir(parents=True)
    (out / 'result.json').write_text(
        json.dumps(dict(top1=12.5, top5=50.0, train_s=1.0, test_s=2.0)))
    assert run_one(arm, 3, tmp_path, tmp_path) == dict(
        top1=12.5, top5=50.0, train_s=1.0, test_s=2.0, resumed=True)
    with pytest.raises(AssertionError, match='ran training ResNet-18'):
        run_one(arm, 4, tmp_path, tmp_path)


def test_a_finished_dense_run_is_read_and_a_new_one_starts_from_the_classifier(
        tmp_path, monkeypatch):
    steps = _no_runs(monkeypatch)
    arm = ARMS[0]
    classifier = tmp_path / arm.slug / 'seed0'
    classifier.mkdir(parents=True)
    (classifier / 'last_checkpoint').write_text(str(classifier / 'e.pth'))
    done = tmp_path / 'fpn' / arm.slug / 'seed1'
    done.mkdir(parents=True)
    (done / 'result.json').write_text(json.dumps(dict(miou=40.0)))
    assert run_one(
        arm, 1, tmp_path, tmp_path, dense=True) == dict(
            miou=40.0, resumed=True)
    with pytest.raises(AssertionError, match='ran training SAEViT-t Semantic'):
        run_one(arm, 0, tmp_path, tmp_path, dense=True)
    assert steps[0].args[1] == DEMO_DENSE_CONFIG
    assert f'model.backbone.init_cfg.checkpoint={classifier / "e.pth"}' in \
        steps[0].args
    with pytest.raises(ValueError, match='no dense config'):
        run_one(ARMS[1], 0, tmp_path, tmp_path, dense=True)


def test_seed_statistics():
    runs = {0: dict(top1=50., train_s=1.), 1: dict(top1=54., train_s=2.)}
    summary = ablation.summarize_seeds(runs)
    assert summary['top1_mean'] == 52.
    assert summary['top1_std'] == pytest.approx(2 * 2**0.5)
    assert (summary['top1_min'], summary['top1_max']) == (50., 54.)


def test_arm_slugs_are_distinct():
    assert len({a.slug for a in ARMS}) == len(ARMS)
    assert isinstance(ARMS[0], Arm) and ARMS[0].kind == 'saevit'


@pytest.mark.slow
@pytest.mark.cls
def test_smoke_sweep_runs_every_arm_and_resumes(tmp_path_factory, tmp_path):
    """One short run per arm through the real command, then the same
    command again: it resumes (no training) and rewrites the report."""
    pytest.importorskip('mmpretrain.models')
    data = demo_data_root(tmp_path_factory)
    args = [
        'tools/analysis_tools/ablation.py', '--smoke', '--seeds', '0',
        '--data', data, '--work-dir', tmp_path, '--threads', '1'
    ]
    first = run_tool(args, data, timeout=1800)
    report = json.loads((tmp_path / 'smoke' / 'ablation.json').read_text())
    assert [a['name'] for a in report['arms']] == [a.name for a in ARMS]
    for arm in report['arms']:
        assert 0 <= arm['top1_mean'] <= 100
        assert arm['gflops'] > 0 and arm['throughput']['median'] > 0
    assert (tmp_path / 'smoke' / 'ablation.png').stat().st_size > 0
    tables = (tmp_path / 'smoke' / 'ablation.md').read_text()
    assert '| SAEViT-t |' in tables and 'Semantic FPN' in tables
    assert '[ablation] ResNet-18 seed 0' in first.stdout
    dense = report['dense']['arms']
    assert [(a['kind'], a['name']) for a in dense[:2]
            ] == [('saevit', 'SAEViT-t'), ('ablation', 'CIFFN -> plain FFN')]
    best = max((a for a in report['arms'] if a['kind'] == 'peer'),
               key=lambda a: a['top1_mean'])
    assert [a['name'] for a in dense[2:]] == [best['name']]
    for arm in dense:
        assert 0 <= arm['miou_mean'] <= 100
        assert arm['gflops'] > 0 and arm['throughput']['median'] > 0
    logs = sorted((tmp_path / 'smoke').glob('*/seed0/train.log')) + sorted(
        (tmp_path / 'smoke').glob('fpn/*/seed0/train.log'))
    assert len(logs) == len(ARMS) + 3
    written = [log.stat().st_mtime_ns for log in logs]
    run_tool(args, data, timeout=900)
    assert [log.stat().st_mtime_ns for log in logs] == written, \
        'the second run trained again instead of resuming'


def _row(name, kind, values, metric='top1'):
    runs = {i: {metric: v, 'train_s': 60.} for i, v in enumerate(values)}
    return dict(
        name=name,
        kind=kind,
        params_m=1.0,
        gflops=0.5,
        throughput=dict(median=10.0),
        **ablation.summarize_seeds(runs, metric))


def test_tables_compare_every_arm_with_saevit_against_the_seed_spread(
        tmp_path):
    settings = dict(seeds=[0, 1], img_size=224, batch_size=32, threads=2)
    result = dict(
        command='python tools/analysis_tools/ablation.py',
        settings=settings,
        total_s=600.,
        runs_s=6000.,
        arms=[
            _row('SAEViT-t', 'saevit', [50., 52.]),
            _row('no DWSConv', 'ablation', [45., 46.]),
            _row('ResNet-18', 'peer', [51., 55.])
        ],
        dense=dict(
            task='fpn.py',
            settings=dict(settings, img_size=512, batch_size=1),
            arms=[
                _row('SAEViT-t', 'saevit', [40., 41.], 'miou'),
                _row('ResNet-18', 'peer', [42., 44.], 'miou')
            ]))
    tables = ablation.markdown(result)
    assert '| no DWSConv | 45.5 ± 0.7 | 45.0, 46.0 | -5.5 (beyond the ' \
        'spread) |' in tables
    assert '| ResNet-18 | 53.0 ± 2.8 | 51.0, 55.0 | +2.0 (within the ' \
        'spread) |' in tables
    assert '| ResNet-18 | 43.0 ± 1.4 | 42.0, 44.0 | +2.5 (beyond' in tables
    assert 'GFLOPs @ 512²' in tables and '100 min of training' in tables
    ablation.plot(result, tmp_path / 'a.png')
    assert (tmp_path / 'a.png').stat().st_size > 0
    # --arms without SAEViT-t, --no-dense: no reference, no dense table
    peers_only = dict(result, arms=result['arms'][2:])
    del peers_only['dense']
    tables = ablation.markdown(peers_only)
    assert '| ResNet-18 | 53.0 ± 2.8 | 51.0, 55.0 | - |' in tables
    assert 'Semantic FPN' not in tables
    ablation.plot(peers_only, tmp_path / 'b.png')


def test_report_regenerates_the_committed_tables(tmp_path):
    """``--report`` reads ``docs/ablation/ablation.json`` and writes the
    committed ``docs/ablation/ablation.md``."""
    json_file = tmp_path / 'ablation.json'
    json_file.write_text((REPO / 'docs/ablation/ablation.json').read_text())
    ablation.main(['--report', str(json_file)])
    tables = (tmp_path / 'ablation.md').read_text()
    assert '| SAEViT-t | 60.8 ± 2.5 | 63.0, 58.0, 61.3 | reference |' in tables
    assert tables == (REPO / 'docs/ablation/ablation.md').read_text()
    assert (tmp_path / 'ablation.png').stat().st_size > 0


@pytest.mark.cls
def test_remeasure_updates_measurements_and_keeps_seed_results(tmp_path):
    """``--remeasure`` measures the arms of an ablation.json again with the
    current code and names the command and machine; seed results stay."""
    pytest.importorskip('mmpretrain.models')
    committed = json.loads(
        (REPO / 'docs' / 'ablation' / 'ablation.json').read_text())
    small = dict(committed, settings=dict(
        committed['settings'], img_size=64, batch_size=2, repeats=1))
    small['arms'] = [
        dict(row, params_m=-1., gflops=-1., throughput=dict(median=-1.))
        for row in committed['arms'][:2]
    ]
    small.pop('dense', None)
    json_file = tmp_path / 'ablation.json'
    json_file.write_text(json.dumps(small))
    ablation.main(['--remeasure', str(json_file), '--threads', '1'])
    result = json.loads(json_file.read_text())
    for before, after in zip(small['arms'], result['arms']):
        assert after['top1'] == before['top1']
        assert after['params_m'] > 0 and after['gflops'] > 0
        assert after['throughput']['median'] > 0
    assert result['measured_by']['threads'] == 1
    assert '--remeasure' in result['measured_by']['command']
    text = (tmp_path / 'ablation.md').read_text()
    assert 'measured with the current code' in text
