"""The demo's orchestration: steps side by side as processes of one thread,
the first failure ends the others and names itself; the demo picture."""
import importlib.util
import math
import sys
from pathlib import Path

import psutil
import pytest
import torch
from e2e_utils import REPO, TINY_OPTIONS, demo_data_root
from rich.progress import Progress

from demo_figure import save_demo_figure
from demo_steps import Step, StepFailed, run_lanes, run_step


def _demo_script():
    """``tools/demo.py`` as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location('saevit_demo_script',
                                                  REPO / 'tools' / 'demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _python(tmp_path, name, code, **kwargs):
    return Step(name, ['-c', code], tmp_path / f'{name}.log', **kwargs)


def test_lanes_run_in_order_and_return_their_results(tmp_path):

    def lane(name, values):
        seen = []
        for value in values:
            run = yield _python(tmp_path, f'{name}{value}',
                                f'print("{name}", {value})')
            seen.append(run.tail[-1])
        return seen

    results = run_lanes(
        dict(a=lane('a', [1, 2, 3]), b=lane('b', [4])), poll=0.05)
    assert results == dict(a=['a 1', 'a 2', 'a 3'], b=['b 4'])


def test_a_failing_step_ends_the_others_and_names_itself(tmp_path):
    started = []

    def slow():
        run = yield _python(tmp_path, 'slow', 'import time; time.sleep(300)')
        started.append(run)  # never reached: the step is killed

    def failing():
        yield _python(tmp_path, 'failing',
                      'print("the cause"); raise SystemExit(3)')
        yield _python(tmp_path, 'never', 'print("not run")')

    with pytest.raises(StepFailed) as info:
        run_lanes(dict(slow=slow(), failing=failing()), poll=0.05)
    message = str(info.value)
    assert 'failing failed (exit 3)' in message
    assert f'{sys.executable} -c' in message
    assert '| the cause' in message
    assert started == []
    assert not (tmp_path / 'never.log').exists()
    assert psutil.Process().children(recursive=True) == []


def test_run_step_without_check_returns_the_failed_run(tmp_path):
    run = run_step(
        _python(tmp_path, 'fails', 'raise SystemExit(4)'),
        poll=0.05,
        check=False)
    assert run.returncode == 4 and run.seconds > 0


def test_demo_figure_says_synthetic_and_shows_every_task(tmp_path):
    import matplotlib.image
    tile = tmp_path / 'tile.png'
    matplotlib.image.imsave(tile, torch.rand(256, 256, 3).numpy())
    results = [
        dict(
            task=task,
            metric='m',
            text='1.0',
            images=[tile] * count,
            curve=dict(step=[1, 2], loss=[2., 1.]))
        for task, count in (('classification', 3), ('fpn', 1))
    ]
    out = save_demo_figure(tmp_path / 'demo.png', results)
    assert matplotlib.image.imread(out).shape[2] in (3, 4)
    import demo_figure
    assert 'synthetic data' in demo_figure.TITLE


def _backbone_file(tmp_path):
    """A backbone-only SAEViT-T file, as tools/model_converters writes."""
    from saevit_mm.models import SAEViT
    state = {
        f'backbone.{k}': v
        for k, v in SAEViT(arch='t').state_dict().items()
    }
    path = tmp_path / 'backbone.pth'
    torch.save(dict(state_dict=state), path)
    return path


@pytest.mark.slow
def test_side_by_side_fine_tuning_with_two_real_configs(
        tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv('SAEVIT_DEMO_DATA',
                       str(demo_data_root(tmp_path_factory)))
    demo = _demo_script()
    backbone = _backbone_file(tmp_path)
    # an untrained detector's scores are low: keep its boxes so the metric
    # has something to evaluate
    options = dict(
        retinanet=[*TINY_OPTIONS['det'], 'model.test_cfg.score_thr=0.0'],
        fpn=[*TINY_OPTIONS['seg'], 'test_dataloader.dataset.indices=4'])
    with Progress(disable=True) as progress:
        for attempt in range(3):
            results = demo.fine_tune(('retinanet', 'fpn'),
                                     tmp_path / str(attempt), progress,
                                     backbone, 1, options)
            assert [r['task'] for r in results] == ['retinanet', 'fpn']
            for result in results:
                assert math.isfinite(result['value']), result
                assert Path(result['checkpoint']).exists()
    assert psutil.Process().children(recursive=True) == []


@pytest.mark.slow
def test_side_by_side_failure_stops_the_other_run(tmp_path, tmp_path_factory,
                                                  monkeypatch):
    monkeypatch.setenv('SAEVIT_DEMO_DATA',
                       str(demo_data_root(tmp_path_factory)))
    demo = _demo_script()
    backbone = _backbone_file(tmp_path)
    long_fpn = [o for o in TINY_OPTIONS['seg'] if 'max_iters' not in o]
    options = dict(
        retinanet=[*TINY_OPTIONS['det'], 'model.backbone.arch=no-such-arch'],
        fpn=[*long_fpn, 'train_cfg.max_iters=10000'])
    with Progress(disable=True) as progress, pytest.raises(StepFailed) as info:
        demo.fine_tune(('retinanet', 'fpn'), tmp_path, progress, backbone, 1,
                       options)
    message = str(info.value)
    assert message.startswith('training retinanet failed')
    assert 'tools/train.py' in message and 'no-such-arch' in message
    assert psutil.Process().children(recursive=True) == []
    assert not (tmp_path / 'fpn' / 'test.log').exists()
    assert not list((tmp_path / 'fpn').glob('*.pth'))
