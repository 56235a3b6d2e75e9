"""The OpenMMLab stack that tools/setup_env.sh installs works here."""
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import List, Optional

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

REQUIREMENTS = Path(__file__).parents[1] / 'requirements'
#: what the package declares (ranges) and the stacks CI tests (exact pins)
DECLARED = ('runtime', 'mminstall', 'cls', 'det', 'seg')
STACKS = sorted(REQUIREMENTS.glob('constraints/*.txt'))


def _requirements(path: Path) -> List[Requirement]:
    lines = (ln.split('#')[0].strip() for ln in path.read_text().splitlines())
    return [Requirement(ln) for ln in lines if ln]


def _installed(name: str) -> Optional[Version]:
    try:  # local build tags (+cu130, +cpu) do not change the release
        return Version(version(name).split('+')[0])
    except PackageNotFoundError:
        return None


@pytest.mark.parametrize(
    'req', [r for name in DECLARED
            for r in _requirements(REQUIREMENTS / f'{name}.txt')],
    ids=str)
def test_installed_versions_are_in_the_declared_ranges(req):
    installed = _installed(req.name)
    assert installed is not None, f'{req.name} is not installed'
    assert req.specifier.contains(installed, prereleases=True), (
        f'{req.name} {installed} is outside {req}')


def test_declared_requirements_pin_no_exact_version():
    """Ranges only: a user's torch/numpy/mmcv must not be replaced."""
    for name in DECLARED:
        for req in _requirements(REQUIREMENTS / f'{name}.txt'):
            assert not any(s.operator in ('==', '===') for s in req.specifier
                           ), f'{name}.txt pins {req} exactly'


def test_declared_requirements_cannot_move_torch_or_numpy():
    """torch and torchvision are the user's (mmcv is built for them): not
    declared at all; numpy only has a floor (a ceiling would move a newer
    numpy down)."""
    declared = [
        req for name in DECLARED
        for req in _requirements(REQUIREMENTS / f'{name}.txt')
    ]
    assert not [r for r in declared if r.name in ('torch', 'torchvision')]
    for req in (r for r in declared if r.name == 'numpy'):
        assert all(s.operator in ('>=', '>') for s in req.specifier), req


def test_this_environment_is_one_of_the_tested_stacks():
    """Every exact pin of the stack whose torch is installed holds here."""
    torch_version = _installed('torch')
    matching = [
        path for path in STACKS
        if any(r.name == 'torch' and r.specifier.contains(torch_version)
               for r in _requirements(path))
    ]
    assert len(matching) == 1, (
        f'torch {torch_version} matches {len(matching)} of {STACKS}')
    for req in _requirements(matching[0]):
        installed = _installed(req.name)
        if installed is None:  # constraints may name what is not installed
            continue
        assert req.specifier.contains(installed, prereleases=True), (
            f'{matching[0].name}: {req.name} {installed} is not {req}')


def test_host_config_bases_resolve(tmp_path):
    """``mmdet::`` bases go through pkg_resources: needs setuptools<82."""
    from mmengine.config import Config
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text("_base_ = ['mmdet::_base_/default_runtime.py']\n")
    assert Config.fromfile(str(cfg_file)).default_scope == 'mmdet'


def test_mmcv_ops_run_on_cpu():
    from mmcv.ops import nms, roi_align
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.],
                          [50., 50., 60., 60.]])
    _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    feats = torch.arange(16.).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0., 0., 0., 4., 4.]])
    pooled = roi_align(feats, rois, (1, 1), 1.0, 0, 'avg', True)
    torch.testing.assert_close(pooled.flatten(), feats.mean().reshape(1))


@pytest.mark.parametrize('host', ['mmpretrain', 'mmdet', 'mmseg'])
def test_host_models_import(host):
    __import__(f'{host}.models')


def test_saevit_mm_imports_without_hosts_loaded():
    """``import saevit_mm`` must not pull in a host (registry option A)."""
    import subprocess
    import sys
    code = ('import sys, saevit_mm; '
            'print(sorted(m for m in ("mmdet", "mmseg", "mmpretrain") '
            'if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == '[]', out.stderr
