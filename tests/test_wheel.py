"""A non-editable install: the wheel holds only the library, and the configs
work from it, from another directory, with the repository off sys.path."""
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from e2e_utils import DEMO_CONFIGS, REPO, TINY_OPTIONS, demo_data_root


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('wheel')
    # build from a copy without build/ or *.egg-info left by earlier builds,
    # whose stale files setuptools would pack too
    source = out / 'source'
    shutil.copytree(
        REPO, source,
        ignore=shutil.ignore_patterns('.git', '.venv', 'build', '*.egg-info',
                                      'work_dirs', 'data', '__pycache__'))
    subprocess.run([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '-q', '-w', str(out), str(source)
    ],
                   check=True,
                   cwd=out)
    wheels = list(out.glob('saevit_mm-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope='module')
def wheel_python(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed and this environment's packages
    (torch, mmcv, the hosts) visible through a path file: site-packages' own
    path files (the editable install of saevit_mm) are not processed there."""
    env_dir = tmp_path_factory.mktemp('venv')
    venv.create(env_dir, with_pip=False)
    python = env_dir / 'bin' / 'python'
    purelib = subprocess.run(
        [str(python), '-c', 'import sysconfig; '
         'print(sysconfig.get_paths()["purelib"])'],
        check=True, capture_output=True, text=True).stdout.strip()
    ours = sysconfig.get_paths()['purelib']
    assert ours in site.getsitepackages()
    Path(purelib, 'stack.pth').write_text(ours + '\n')
    subprocess.run([
        sys.executable, '-m', 'pip', '--python', str(python), 'install',
        '--no-deps', '-q', str(wheel)
    ],
                   check=True)
    return python


def _run(python: Path, args, cwd: Path, **env) -> str:
    environ = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    environ.update(CUDA_VISIBLE_DEVICES='-1', OMP_NUM_THREADS='1', **env)
    proc = subprocess.run([str(python), *map(str, args)], cwd=cwd,
                          env=environ, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_wheel_holds_only_the_library(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split('/')[0] for n in names if '.dist-info/' not in n}
    assert packages == {'saevit_mm'}, packages
    modules = {n for n in names if n.endswith('.py')}
    assert 'saevit_mm/models/backbones/saevit.py' in modules
    stray = [n for n in modules if n.split('/')[1] in ('demo', 'benchmark')]
    assert stray == [], stray


@pytest.mark.slow
def test_installed_wheel_imports_from_site_packages(wheel_python, tmp_path):
    where = _run(wheel_python,
                 ['-c', 'import saevit_mm; print(saevit_mm.__file__)'],
                 tmp_path)
    assert 'site-packages' in where and str(REPO) not in where, where


@pytest.mark.slow
def test_demo_config_trains_and_tests_from_the_wheel(wheel_python, tmp_path,
                                                     tmp_path_factory):
    data = demo_data_root(tmp_path_factory)
    work = tmp_path / 'work'
    config = DEMO_CONFIGS['cls']
    _run(wheel_python, [
        REPO / 'tools' / 'train.py', config, '--work-dir', work,
        '--cfg-options', *TINY_OPTIONS['cls']
    ], tmp_path, SAEVIT_DEMO_DATA=str(data))
    checkpoint = (work / 'last_checkpoint').read_text().strip()
    out = _run(wheel_python, [
        REPO / 'tools' / 'test.py', config, checkpoint, '--work-dir', work,
        '--cfg-options', *TINY_OPTIONS['cls']
    ], tmp_path, SAEVIT_DEMO_DATA=str(data))
    assert 'accuracy/top1' in out


@pytest.mark.slow
@pytest.mark.det
def test_det_config_builds_and_predicts_from_the_wheel(wheel_python,
                                                       tmp_path):
    config = (REPO / 'configs' / 'det' /
              'retinanet_saevit-t_fpn_8xb2-1x_coco.py')
    code = f'''
import torch, saevit_mm
from mmengine.config import Config
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmdet.structures import DetDataSample
register_all_modules()
cfg = Config.fromfile({str(config)!r})
cfg.model.backbone.norm_cfg = dict(type='BN', requires_grad=True)
model = MODELS.build(cfg.model).eval()
sample = DetDataSample(metainfo=dict(img_shape=(96, 128), ori_shape=(96, 128),
                                     scale_factor=(1., 1.)))
with torch.no_grad():
    out = model(torch.rand(1, 3, 96, 128), [sample], mode='predict')
print(type(model.backbone).__module__, len(out[0].pred_instances))
'''
    out = _run(wheel_python, ['-c', code], tmp_path)
    assert out.startswith('saevit_mm.models.backbones.saevit'), out
