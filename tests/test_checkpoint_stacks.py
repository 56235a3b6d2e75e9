"""A full checkpoint written under the other numpy works through every path a
user takes: ``tools/test.py``, ``--resume`` (training continues),
``load_from`` and mmdet's ``DetInferencer``.

The demo RetinaNet trains a few iterations through ``tools/train.py``; its
checkpoint (message hub with numpy scalars, optimizer, schedulers) is
rewritten with the other numpy's module paths (``numpy.core`` <->
``numpy._core``: the bytes that numpy writes), which is what fails to load
across stacks without saevit_mm's loader (``No module named 'numpy._core'``
under numpy 1.24).
"""

import pytest
from e2e_utils import (DEMO_CONFIGS, TINY_OPTIONS, assert_finite,
                       demo_data_root, last_checkpoint, read_test_metrics,
                       run_tool, train_demo)
from numpy_pickles import NUMPY_CORE, other_numpy, pickle_globals
from numpy_pickles import write_with_numpy_names

pytestmark = [pytest.mark.slow, pytest.mark.det]


@pytest.fixture(scope='module')
def foreign_checkpoint(tmp_path_factory):
    """The demo RetinaNet's checkpoint as the other numpy writes it."""
    pytest.importorskip('mmdet.models')
    trained = last_checkpoint(
        train_demo(tmp_path_factory, 'retinanet', 'det'))
    numpy = other_numpy()
    path = tmp_path_factory.mktemp('foreign') / f'retinanet_{numpy}.pth'
    write_with_numpy_names(trained, path, numpy)
    names = pickle_globals(path)
    assert any(n.startswith(NUMPY_CORE[numpy] + '.') for n in names)
    assert not any(
        n.startswith(core + '.') for core in NUMPY_CORE.values()
        if core != NUMPY_CORE[numpy] for n in names)
    return path


def test_tools_test_py(foreign_checkpoint, tmp_path_factory, tmp_path):
    run_tool([
        'tools/test.py', DEMO_CONFIGS['retinanet'], foreign_checkpoint,
        '--work-dir', tmp_path, '--cfg-options', *TINY_OPTIONS['det'],
        'model.test_cfg.score_thr=0.0'
    ],
             data_root=demo_data_root(tmp_path_factory))
    assert_finite(read_test_metrics(tmp_path), ['coco/bbox_mAP'])


def test_resume_trains_on(foreign_checkpoint, tmp_path_factory, tmp_path):
    options = [o for o in TINY_OPTIONS['det'] if 'max_epochs' not in o]
    proc = run_tool([
        'tools/train.py', DEMO_CONFIGS['retinanet'], '--work-dir', tmp_path,
        '--resume', foreign_checkpoint, '--cfg-options',
        'train_cfg.max_epochs=2', *options
    ],
                    data_root=demo_data_root(tmp_path_factory))
    assert 'resumed epoch: 1' in proc.stdout, proc.stdout[-3000:]
    assert (tmp_path / 'epoch_2.pth').exists()


def test_load_from(foreign_checkpoint, tmp_path_factory, tmp_path):
    proc = run_tool([
        'tools/train.py', DEMO_CONFIGS['retinanet'], '--work-dir', tmp_path,
        '--cfg-options', f'load_from={foreign_checkpoint}',
        *TINY_OPTIONS['det']
    ],
                    data_root=demo_data_root(tmp_path_factory))
    assert f'Load checkpoint from {foreign_checkpoint}' in proc.stdout
    assert (tmp_path / 'epoch_1.pth').exists()


def test_det_inferencer(foreign_checkpoint, tmp_path_factory, tmp_path,
                        monkeypatch):
    from mmdet.apis import DetInferencer
    data_root = demo_data_root(tmp_path_factory)
    monkeypatch.setenv('SAEVIT_DEMO_DATA', str(data_root))
    image = next((data_root / 'coco' / 'val2017').glob('*.jpg'))
    inferencer = DetInferencer(
        model=str(DEMO_CONFIGS['retinanet']),
        weights=str(foreign_checkpoint),
        device='cpu',
        show_progress=False)
    result = inferencer(str(image), return_vis=False)
    (pred, ) = result['predictions']
    assert len(pred['bboxes']) == len(pred['scores'])
