"""The OpenMMLab stack that tools/setup_env.sh installs works here."""
import re
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

REQUIREMENTS = Path(__file__).parents[1] / 'requirements'


def pinned_versions():
    """``(distribution, version)`` for every ``==`` pin in requirements/."""
    pins = []
    for path in sorted(REQUIREMENTS.glob('*.txt')):
        for line in path.read_text().splitlines():
            match = re.fullmatch(r'\s*([A-Za-z0-9_.-]+)==([^\s#;]+).*', line)
            if match:
                pins.append(pytest.param(*match.groups(), id=match[1]))
    return pins


@pytest.mark.parametrize('dist,expected', pinned_versions())
def test_installed_versions_match_the_pins(dist, expected):
    # local build tags (+cu130, +cpu) do not change the release
    assert version(dist).split('+')[0] == expected


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
