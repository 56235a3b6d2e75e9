"""The ablation / peer sweep: its configs, its resume logic and a smoke run."""
import json
import re

import pytest
import torch
from e2e_utils import REPO, demo_data_root, run_tool
from mmengine.config import Config

import ablation
from ablation import ARMS, DEMO_CONFIG, Arm, run_one, select_arms

#: What each arm may change in the demo config it inherits: the backbone
#: (SAEViT arms: only their ablation switch), and what the backbone's output
#: forces (the head's input width; EdgeNeXt pools itself, so no neck).
ALLOWED = {
    'SAA -> full attention': [r'^model\.backbone\.attn_type$'],
    'CIFFN -> plain FFN': [r'^model\.backbone\.ffn_type$'],
    'no DWSConv': [r'^model\.backbone\.use_dwsconv$'],
    'EdgeNeXt-xsmall': [
        r'^model\.backbone\.', r'^model\.neck(\.|$)',
        r'^model\.head\.in_channels$'
    ],
    'MobileViT-x_small':
    [r'^model\.backbone\.', r'^model\.head\.in_channels$'],
    'ResNet-18': [r'^model\.backbone\.', r'^model\.head\.in_channels$'],
}


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
    assert shipped == {arm.config for arm in ARMS if arm.config != DEMO_CONFIG}
    assert set(ALLOWED) == {arm.name for arm in ARMS} - {'SAEViT-t'}


@pytest.mark.parametrize(
    'arm', [a for a in ARMS if a.config != DEMO_CONFIG], ids=lambda a: a.slug)
def test_arm_changes_only_the_backbone(arm):
    """Same data, recipe, schedule, head and seed handling as the demo."""
    demo = dict(_flatten(Config.fromfile(str(REPO / DEMO_CONFIG)).to_dict()))
    cfg = dict(_flatten(Config.fromfile(str(REPO / arm.config)).to_dict()))
    changed = sorted(k for k in demo.keys() | cfg.keys()
                     if demo.get(k) != cfg.get(k))
    assert changed, 'an arm must change something'
    unexpected = [
        k for k in changed if not any(re.search(r, k) for r in ALLOWED[
            arm.name])
    ]
    assert not unexpected, f'{arm.name} also changes {unexpected}'


@pytest.mark.cls
@pytest.mark.parametrize('arm', ARMS, ids=lambda a: a.slug)
def test_arm_builds_and_classifies_a_demo_image(arm):
    pytest.importorskip('mmpretrain.models')
    model = ablation.build_arm_model(arm)
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 10)


def test_unknown_arm_is_refused_with_the_known_names():
    with pytest.raises(KeyError, match='known: .*ResNet-18'):
        select_arms(['ResNet-50'])
    assert [a.name for a in select_arms(['resnet-18', 'SAEViT-t'])] == [
        'ResNet-18', 'SAEViT-t'
    ]


def test_a_finished_run_is_read_not_run_again(tmp_path, monkeypatch):
    arm = ARMS[-1]
    out = tmp_path / arm.slug / 'seed3'
    out.mkdir(parents=True)
    (out / 'result.json').write_text(
        json.dumps(dict(top1=12.5, top5=50.0, train_s=1.0, test_s=2.0)))

    def no_step(step, *args, **kwargs):
        raise AssertionError(f'ran {step.name}')

    monkeypatch.setattr(ablation, 'run_step', no_step)
    result = run_one(arm, 3, tmp_path, tmp_path)
    assert result == dict(
        top1=12.5, top5=50.0, train_s=1.0, test_s=2.0, resumed=True)
    with pytest.raises(AssertionError, match='ran training ResNet-18'):
        run_one(arm, 4, tmp_path, tmp_path)


def test_seed_statistics():
    runs = {0: dict(top1=50., train_s=1.), 1: dict(top1=54., train_s=2.)}
    summary = ablation.summarize_arm(runs)
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
        '--no-progress', '--data', data, '--work-dir', tmp_path,
        '--img-size', '64', '--batch-size', '2', '--repeats', '1',
        '--threads', '1'
    ]
    first = run_tool(args, data, timeout=1800)
    report = json.loads((tmp_path / 'smoke' / 'ablation.json').read_text())
    assert [a['name'] for a in report['arms']] == [a.name for a in ARMS]
    for arm in report['arms']:
        assert 0 <= arm['top1_mean'] <= 100
        assert arm['gflops'] > 0 and arm['throughput']['median'] > 0
    assert (tmp_path / 'smoke' / 'ablation.png').stat().st_size > 0
    assert '[ablation] ResNet-18 seed 0' in first.stdout
    logs = sorted((tmp_path / 'smoke').glob('*/seed0/train.log'))
    assert len(logs) == len(ARMS)
    written = [log.stat().st_mtime_ns for log in logs]
    run_tool(args, data, timeout=900)
    assert [log.stat().st_mtime_ns for log in logs] == written, \
        'the second run trained again instead of resuming'
