"""The figures of ``configs/*/metafile.yml`` and ``configs/*/README.md``,
recomputed for the model each config builds.

FLOPs come from ``tools/analysis_tools/get_flops.py``, run with the options
the config implies (arch, input size, SAA delegate bound, outputs); the
README of the folder gives that command. Parameters come from building the
config's whole model with its host. The READMEs show the same figures,
rounded to two decimals (M parameters, G FLOPs).
"""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from mmengine.config import Config

REPO = Path(__file__).parents[1]
CONFIGS = REPO / 'configs'
TASKS = dict(cls='mmpretrain', det='mmdet', seg='mmseg')
#: the metafile field of each folder's FLOPs and the README column
FLOPS_FIELD = dict(cls='FLOPs', det='Backbone FLOPs', seg='Backbone FLOPs')
#: SAEViT arguments that do not change the count: the arch and the bound
#: have their own options; SyncBN counts as BN; the rest act in training
NOT_COUNTED = ('type', 'arch', 'max_delegates', 'init_cfg', 'norm_cfg',
               'norm_eval', 'drop_path_rate', 'frozen_stages', 'with_cp')

yaml = pytest.importorskip('yaml')


def _models(task: str) -> List[Dict]:
    meta = yaml.safe_load((CONFIGS / task / 'metafile.yml').read_text())
    return meta['Models']


def _input_shape(cfg: Config, task: str) -> Tuple[int, int]:
    """H, W the figures are given at: the classification test crop, the
    detection test scale, the segmentation training crop."""
    if task == 'seg':
        return tuple(cfg.crop_size)
    steps = {step.type: step for step in cfg.test_pipeline}
    if task == 'cls':
        size = steps['CenterCrop'].crop_size
        return (size, size) if isinstance(size, int) else tuple(size[::-1])
    width, height = steps['Resize'].scale
    return height, width


def _option(value) -> str:
    if isinstance(value, (tuple, list)):
        text = ','.join(map(str, value))
        return f'({text},)' if len(value) == 1 else f'({text})'
    if isinstance(value, dict):
        raise TypeError(f'get_flops.py --cfg-options takes no dict: {value}')
    return str(value)


def flops_options(cfg: Config, task: str) -> List[str]:
    """The get_flops.py options, but for ``--arch``, that count the backbone
    (det/seg) or the classifier (cls) ``cfg`` builds."""
    backbone = cfg.model.backbone
    assert backbone.type == 'SAEViT'
    assert backbone.get('norm_cfg', {}).get('type', 'BN') in ('BN', 'SyncBN')
    options = ['--shape', *map(str, _input_shape(cfg, task))]
    if task == 'cls':
        assert cfg.model.neck.type == 'GlobalAveragePooling'
        assert cfg.model.head.type == 'LinearClsHead'
        if cfg.model.head.num_classes != 1000:
            options += ['--num-classes', str(cfg.model.head.num_classes)]
    else:
        options.append('--backbone-only')
    extra = [
        f'{key}={_option(value)}' for key, value in backbone.items()
        if key not in NOT_COUNTED
    ]
    # one bound for every stage (None: unbounded) has its own option; the
    # arch's own bound ('arch', the default) needs none
    bound = backbone.get('max_delegates', 'arch')
    if bound is None or isinstance(bound, int):
        options += ['--max-delegates', str(bound).lower()]
    elif bound != 'arch':
        extra.append(f'max_delegates={_option(bound)}')
    if extra:
        options += ['--cfg-options', *extra]
    return options


def _command(archs: List[str], options: List[str]) -> str:
    """The command as a README shows it."""
    words = ['python tools/analysis_tools/get_flops.py', '--arch', *archs]
    words += [f'"{w}"' if '(' in w else w for w in options]
    return ' '.join(words)


_MEASURED: Dict[str, Dict] = {}


def measured(task: str) -> Dict[str, Dict]:
    """Per config of ``task``'s metafile: its get_flops.py row, the command
    that gave it and the config (one get_flops.py run per set of options)."""
    pytest.importorskip(f'{TASKS[task]}.models')
    if task not in _MEASURED:
        groups: Dict[Tuple[str, ...], List] = {}
        for model in _models(task):
            cfg = Config.fromfile(str(REPO / model['Config']))
            options = tuple(flops_options(cfg, task))
            groups.setdefault(options, []).append((model['Config'], cfg))
        results = {}
        for options, members in groups.items():
            archs = list(
                dict.fromkeys(cfg.model.backbone.arch for _, cfg in members))
            rows = _run_get_flops(archs, list(options))
            for config, cfg in members:
                (row, ) = [
                    r for r in rows
                    if r['arch'] == cfg.model.backbone.arch and (
                        r['model'] == 'backbone') == (task != 'cls')
                ]
                results[config] = dict(
                    row=row, cfg=cfg, command=_command(archs, list(options)))
        _MEASURED[task] = results
    return _MEASURED[task]


def _run_get_flops(archs: List[str], options: List[str]) -> List[Dict]:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([
        sys.executable, 'tools/analysis_tools/get_flops.py', '--arch', *archs,
        *options, '--json'
    ],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _entries():
    for task in TASKS:
        for model in _models(task):
            yield pytest.param(
                task,
                model,
                marks=getattr(pytest.mark, task),
                id=f'{task}/{model["Name"]}')


@pytest.mark.parametrize('task,model', list(_entries()))
def test_metafile_flops_are_get_flops_of_the_config(task, model):
    row = measured(task)[model['Config']]['row']
    assert model['Metadata'][FLOPS_FIELD[task]] == row['flops']
    if task == 'cls':  # get_flops.py's classifier is the config's
        assert model['Metadata']['Parameters'] == row['params']


@pytest.mark.parametrize('task,model', list(_entries()))
def test_metafile_parameters_are_the_built_model(task, model):
    """Parameters of the whole model the config builds with its host."""
    pytest.importorskip(f'{TASKS[task]}.models')
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(str(REPO / model['Config']))
    init_default_scope(cfg.default_scope)
    if cfg.get('data_preprocessor'):  # as the Runner does
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    built = MODELS.build(cfg.model)
    assert model['Metadata']['Parameters'] == sum(p.numel()
                                                  for p in built.parameters())


def _table(readme: str) -> List[Dict[str, str]]:
    """The README's model table as one dict per row, keyed by column."""
    lines = [line for line in readme.splitlines() if line.startswith('|')]
    assert '| Config |' in lines[0], 'the model table comes first'
    header = [cell.strip() for cell in lines[0].strip('|').split('|')]
    return [
        dict(zip(header, (c.strip() for c in line.strip('|').split('|'))))
        for line in lines[2:]
    ]


@pytest.mark.parametrize(
    'task', [pytest.param(t, marks=getattr(pytest.mark, t)) for t in TASKS])
def test_readme_shows_the_metafile_figures_and_the_command(task):
    readme = (CONFIGS / task / 'README.md').read_text()
    rows = _table(readme)
    for model in _models(task):
        (row, ) = [r for r in rows if f'(./{model["Name"]}.py)' in r['Config']]
        meta = model['Metadata']
        assert row['Params (M)'] == f'{meta["Parameters"] / 1e6:.2f}'
        assert row[f'{FLOPS_FIELD[task]} (G)'] == \
            f'{meta[FLOPS_FIELD[task]] / 1e9:.2f}'
        command = measured(task)[model['Config']]['command']
        assert command in readme.splitlines(), command
