"""Checkpoint loading with mmengine 0.10.7, on every torch we support.

One loader (``saevit_mm.engine.checkpoint_loader``) reads every checkpoint
mmengine reads, local or ``http(s)://``, with one restricted unpickler
(``saevit_mm.engine.checkpoint_unpickler``). On torch 2.1 (a full pickle
load by default) and on torch >= 2.6 (``weights_only=True`` by default)
alike: a tiny mmengine Runner trains on CPU, is interrupted, resumes from its
own checkpoint and must end where an uninterrupted run ends; runner
checkpoints written under numpy 1.x (``numpy.core.*`` names) and numpy 2
(``numpy._core.*``) load in either numpy; a pure-tensor file loads through
``init_cfg=Pretrained``; a file holding an arbitrary pickled object or
``os.system`` is refused with a message naming it, through ``init_cfg``,
``load_from`` and ``--resume``, from a file or from a URL served on
127.0.0.1, and its code never runs; torch's opt-out
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is honoured.
"""
import collections
import json
import os
import pickle
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

import saevit_mm  # noqa: F401  (registers the loaders)
from saevit_mm.engine.checkpoint_loader import (safe_load_checkpoint,
                                                safe_load_from_http)
from saevit_mm.engine.checkpoint_unpickler import CheckpointRefused
from numpy_pickles import (NUMPY_CORE, NUMPY_GLOBALS, pickle_globals,
                           write_with_numpy_names)
from toy_runner import (MAX_ITERS, MSEMetric, NumpyInfoHook, ToyModel,
                        build_runner, toy_dataset)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / 'tests' / 'data'

TORCH_LOAD_DEFAULTS_TO_WEIGHTS_ONLY = tuple(
    int(v) for v in torch.__version__.split('.')[:2]) >= (2, 6)
#: torch.serialization.add_safe_globals exists (torch >= 2.4)
HAS_SAFE_GLOBALS = hasattr(torch.serialization, 'get_safe_globals')


class Interrupt(Exception):
    """Stands for a killed job."""


class InterruptHook(Hook):
    """Raises after a given iteration (after the checkpoint hook ran)."""
    priority = 'LOWEST'

    def __init__(self, after_iter: int):
        self.after_iter = after_iter

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.after_iter:
            raise Interrupt(f'interrupted after iteration {self.after_iter}')


def test_runner_resumes_after_interrupt_and_matches_uninterrupted(tmp_path):
    reference_dir = tmp_path / 'reference'
    run_dir = tmp_path / 'interrupted'
    reference_dir.mkdir()
    run_dir.mkdir()
    reference = build_runner(reference_dir)
    reference.train()

    interrupted = build_runner(run_dir, [InterruptHook(after_iter=5)])
    with pytest.raises(Interrupt):
        interrupted.train()
    assert (run_dir / 'iter_3.pth').exists()
    assert not (run_dir / 'iter_6.pth').exists()

    resumed = build_runner(run_dir, resume=True)
    resumed.train()
    assert resumed.iter == MAX_ITERS == reference.iter
    ours = resumed.model.state_dict()
    theirs = reference.model.state_dict()
    assert list(ours) == list(theirs)
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], msg=name)


def test_runner_checkpoint_loads_and_test_loop_uses_it(tmp_path):
    runner = build_runner(tmp_path)
    runner.train()
    ckpt = safe_load_checkpoint(str(tmp_path / f'iter_{MAX_ITERS}.pth'))
    assert ckpt['meta']['iter'] == MAX_ITERS
    assert 'train/loss' in ckpt['message_hub']['log_scalars']
    # the path tools/test.py CONFIG CKPT takes: load_from + Runner.test
    tester = Runner(
        model=ToyModel(),
        work_dir=str(tmp_path / 'test'),
        test_dataloader=dict(
            dataset=toy_dataset(8),
            batch_size=4,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        test_cfg=dict(),
        test_evaluator=[MSEMetric()],
        load_from=str(tmp_path / f'iter_{MAX_ITERS}.pth'),
        default_scope='mmengine')
    metrics = tester.test()
    assert torch.isfinite(torch.tensor(metrics['mse']))
    # the checkpoint's state_dict holds the EMA weights (EMAHook swaps them)
    for name, ours in tester.model.state_dict().items():
        torch.testing.assert_close(ours, ckpt['state_dict'][name], msg=name)


def test_tensor_only_file_loads_through_pretrained_init(tmp_path):
    source = ToyModel()
    path = tmp_path / 'pretrained.pth'
    torch.save({'state_dict': source.state_dict()}, path)
    # really tensors only: torch's own strict loader accepts it
    torch.load(path, weights_only=True)
    target = ToyModel(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    target.init_weights()
    ours, theirs = target.state_dict(), source.state_dict()
    assert list(ours) == list(theirs)
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], msg=name)


class Payload:
    """An arbitrary object: unpickling it would run os.getcwd."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_arbitrary_pickled_object_is_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'extra': Payload()}, path)
    with pytest.raises(
            CheckpointRefused, match=r"refused to unpickle.*posix\.getcwd"):
        safe_load_checkpoint(str(path))
    # and the Runner's path (load_checkpoint) goes through the same refusal
    with pytest.raises(pickle.UnpicklingError, match='refused to unpickle'):
        load_checkpoint(ToyModel(), str(path))


def test_unrestricted_getattr_is_refused(tmp_path):
    """getattr is allowed for HistoryBuffer's methods only."""

    class GetattrPayload:

        def __init__(self, owner, name):
            self.owner, self.name = owner, name

        def __reduce__(self):
            return (getattr, (self.owner, self.name))

    for owner, name in [(HistoryBuffer, '__init__'),
                        (collections.OrderedDict, 'fromkeys')]:
        path = tmp_path / f'getattr_{name}.pth'
        torch.save({'x': GetattrPayload(owner, name)}, path)
        with pytest.raises(
                pickle.UnpicklingError, match=f'Refused getattr.*{name}'):
            safe_load_checkpoint(str(path))
    # the methods a runner checkpoint names are allowed
    path = tmp_path / 'getattr_mean.pth'
    torch.save({'x': GetattrPayload(HistoryBuffer, 'mean')}, path)
    assert safe_load_checkpoint(str(path))['x'] is HistoryBuffer.mean


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothere.pth'):
        safe_load_checkpoint(str(tmp_path / 'nothere.pth'))


# ---------------------------------------------------------------------------
# What importing saevit_mm changes.


def test_import_registers_the_local_and_url_loaders():
    """mmengine's loaders for local files (prefix '') and http(s) are ours,
    on every torch; the other schemes are mmengine's. A fresh interpreter,
    so that this test module's own import of saevit_mm does not count."""
    code = """if True:
        import json
        from mmengine.runner.checkpoint import CheckpointLoader
        before = dict(CheckpointLoader._schemes)
        import saevit_mm
        from saevit_mm.engine import checkpoint_loader as ours
        after = CheckpointLoader._schemes
        print(json.dumps(dict(
            order=[list(before), list(after)],
            changed=sorted(k for k in set(before) | set(after)
                           if before.get(k) is not after.get(k)),
            local=after.get('') is ours.safe_load_checkpoint,
            http=[after.get(p) is ours.safe_load_from_http
                  for p in ('http://', 'https://')])))
    """
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['order'][0] == result['order'][1]
    assert result['changed'] == ['', 'http://', 'https://'], result
    assert result['local'] and result['http'] == [True, True], result


# ---------------------------------------------------------------------------
# Runner checkpoints across numpy 1 and numpy 2.

#: Runner checkpoints committed as written by each stack
#: (``python tests/data/checkpoints/make_runner_checkpoint.py``).
STACK_CHECKPOINTS = {
    'numpy1': DATA / 'checkpoints' / 'runner_torch2.1_numpy1.pth',
    'numpy2': DATA / 'checkpoints' / 'runner_torch2.14_numpy2.pth',
}


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint the toy Runner wrote (numpy values, HistoryBuffer)."""
    work_dir = tmp_path_factory.mktemp('runner')
    build_runner(work_dir, [NumpyInfoHook()]).train()
    return work_dir / f'iter_{MAX_ITERS}.pth'


def assert_same(ours: Any, theirs: Any, where: str = 'checkpoint') -> None:
    """Equal values of the same types, all the way down."""
    assert type(ours) is type(theirs), (where, type(ours), type(theirs))
    if isinstance(ours, dict):
        assert list(ours) == list(theirs), where
        for key in ours:
            assert_same(ours[key], theirs[key], f'{where}[{key!r}]')
    elif isinstance(ours, (list, tuple)):
        assert len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f'{where}[{i}]')
    elif isinstance(ours, torch.Tensor):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0, msg=where)
    elif isinstance(ours, np.ndarray):
        assert ours.dtype == theirs.dtype, where
        np.testing.assert_array_equal(ours, theirs, err_msg=where)
    elif isinstance(ours, HistoryBuffer):
        assert_same(vars(ours), vars(theirs), where)
    else:
        assert ours == theirs, where


@pytest.mark.parametrize('numpy', sorted(NUMPY_CORE))
def test_runner_checkpoint_of_either_numpy_loads(runner_checkpoint, tmp_path,
                                                 numpy):
    renamed = tmp_path / f'{numpy}.pth'
    write_with_numpy_names(runner_checkpoint, renamed, numpy)
    names = pickle_globals(renamed)
    assert {n for n in names if n.startswith('numpy')} == NUMPY_GLOBALS[numpy]
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in names

    # the values, read back with a full pickle load of the file as saved
    expected = torch.load(
        runner_checkpoint, map_location='cpu', weights_only=False)
    info = expected['message_hub']['runtime_info']['numpy_values']
    assert type(info['loss']) is np.float64  # the fixture has numpy values
    # mmengine's loader, as --resume and load_from call it
    loaded = CheckpointLoader.load_checkpoint(
        str(renamed), map_location='cpu')
    assert_same(loaded, expected)
    # and mmengine's load_checkpoint, as init_cfg=Pretrained calls it
    model = ToyModel()
    load_checkpoint(model, str(renamed), map_location='cpu', strict=True)
    state = model.state_dict()
    assert list(state) == list(expected['state_dict'])
    for name in state:
        torch.testing.assert_close(
            state[name], expected['state_dict'][name], msg=name)


@pytest.mark.parametrize('stack', sorted(STACK_CHECKPOINTS))
def test_runner_checkpoint_written_by_either_stack_loads(stack, tmp_path):
    """Files the toy Runner wrote in the classic stack (torch 2.1, numpy
    1.24) and in the reference stack (torch 2.14, numpy 2.4) load in this
    one, resume and train on."""
    path = STACK_CHECKPOINTS[stack]
    assert {n for n in pickle_globals(path)
            if n.startswith('numpy')} == NUMPY_GLOBALS[stack]
    ckpt = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert ckpt['meta']['iter'] == MAX_ITERS
    info = ckpt['message_hub']['runtime_info']['numpy_values']
    assert type(info['loss']) is np.float64
    assert info['losses'].dtype == np.float32
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    # --resume: the Runner restores model, optimizer, schedulers and
    # message hub from the file and trains on
    work_dir = tmp_path / 'resumed'
    work_dir.mkdir()
    runner = build_runner(
        work_dir, resume=True, load_from=str(path), max_iters=MAX_ITERS + 3)
    runner.train()
    assert runner.iter == MAX_ITERS + 3
    # the message hub came from the file: its loss history goes on
    assert len(runner.message_hub.get_scalar('train/loss').data[0]) > 3


# ---------------------------------------------------------------------------
# What is refused, from a file or a URL, through every path that loads.


class SystemCall:
    """Unpickling this runs a shell command through os.system."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command, ))


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A directory served over HTTP on 127.0.0.1 (``served.url(name)``),
    downloads cached under ``tmp_path`` (``TORCH_HOME``)."""
    import functools
    import http.server
    import threading
    root = tmp_path / 'served'
    root.mkdir()
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    class Served:
        dir = root

        @staticmethod
        def url(name: str) -> str:
            return f'http://127.0.0.1:{server.server_port}/{name}'

    try:
        yield Served
    finally:
        server.shutdown()
        server.server_close()


def _load_through(how: str, where: str, work_dir: Path) -> None:
    """Load ``where`` the way ``how`` names: init_cfg, load_from, resume."""
    if how == 'init_cfg':
        model = ToyModel(
            init_cfg=dict(type='Pretrained', checkpoint=where))
        model.init_weights()
    elif how == 'load_from':
        runner = build_runner(work_dir, load_from=where)
        runner.load_or_resume()
    else:  # --resume CKPT: resume=True with load_from, as tools/train.py
        runner = build_runner(work_dir, resume=True, load_from=where)
        runner.load_or_resume()


@pytest.mark.parametrize('how', ['init_cfg', 'load_from', 'resume'])
@pytest.mark.parametrize('source', ['file', 'http'])
def test_code_running_pickle_is_refused(tmp_path, served, monkeypatch, how,
                                        source):
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)
    monkeypatch.delenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', raising=False)
    marker = tmp_path / 'code_ran'
    path = served.dir / 'evil.pth'
    torch.save(
        {
            'state_dict': ToyModel().state_dict(),
            'meta': SystemCall(f'touch "{marker}"')
        }, path)
    where = str(path) if source == 'file' else served.url('evil.pth')
    name = f'{os.system.__module__}.system'  # posix.system on Linux
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    with pytest.raises(
            CheckpointRefused,
            match=rf'refused to unpickle .*evil\.pth.*{re.escape(name)}'):
        _load_through(how, where, work_dir)
    assert not marker.exists()
    # the payload is live: a full pickle load runs it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_url_checkpoint_loads_once_downloaded(served, runner_checkpoint):
    (served.dir / 'runner.pth').write_bytes(runner_checkpoint.read_bytes())
    url = served.url('runner.pth')
    expected = torch.load(runner_checkpoint, weights_only=False)
    assert_same(CheckpointLoader.load_checkpoint(url), expected)
    # cached: served or not, the second load reads the downloaded file
    (served.dir / 'runner.pth').unlink()
    assert_same(safe_load_from_http(url), expected)


def test_pickled_os_system_is_refused_with_its_name(tmp_path, monkeypatch):
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'evil.pth'
    torch.save(
        {
            'state_dict': ToyModel().state_dict(),
            'meta': SystemCall(f'touch "{marker}"')
        }, path)
    name = f'{os.system.__module__}.system'  # posix.system on Linux
    with pytest.raises(
            pickle.UnpicklingError,
            match=rf'refused to unpickle .*{re.escape(name)}'):
        CheckpointLoader.load_checkpoint(str(path))
    with pytest.raises(pickle.UnpicklingError, match=re.escape(name)):
        load_checkpoint(ToyModel(), str(path))
    assert not marker.exists()


def test_file_is_unpickled_once_through_pretrained_init(
        tmp_path, monkeypatch, tiny_arch):
    """SAEViT's Pretrained init checks the file and loads it: one read."""
    from saevit_mm.engine import checkpoint_unpickler
    from saevit_mm.models import SAEViT
    arch = tiny_arch
    source = SAEViT(arch=arch)
    source.init_weights()
    path = tmp_path / 'backbone.pth'
    torch.save({'state_dict': source.state_dict()}, path)
    loads = []
    monkeypatch.setattr(
        checkpoint_unpickler.Unpickler, 'load',
        lambda self: loads.append(1) or pickle.Unpickler.load(self))
    target = SAEViT(
        arch=arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    target.init_weights()
    assert len(loads) == 1
    for name, value in target.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[name], msg=name)


def test_torch_opt_out_loads_a_trusted_file(tmp_path, monkeypatch):
    """``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (torch's switch for a trusted
    file) turns the restriction off for our loader, on every torch."""
    monkeypatch.delenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', raising=False)
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)
    path = tmp_path / 'trusted.pth'
    trusted = dict(state_dict=dict(w=torch.ones(2)), ratio=Fraction(1, 3))
    torch.save(trusted, path)
    with pytest.raises(
            CheckpointRefused,
            match=r'refused to unpickle .*fractions\.Fraction'):
        CheckpointLoader.load_checkpoint(str(path))
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    loaded = CheckpointLoader.load_checkpoint(str(path))
    assert type(loaded['ratio']) is Fraction and loaded['ratio'] == Fraction(
        1, 3)


# ---------------------------------------------------------------------------
# torch's own loading is left as it is.


def test_torch_load_elsewhere_is_unchanged(runner_checkpoint):
    if HAS_SAFE_GLOBALS:
        before = list(torch.serialization.get_safe_globals())
    CheckpointLoader.load_checkpoint(str(runner_checkpoint))
    if HAS_SAFE_GLOBALS:
        assert list(torch.serialization.get_safe_globals()) == before
    if TORCH_LOAD_DEFAULTS_TO_WEIGHTS_ONLY:
        # a plain torch.load elsewhere in the process: torch's allowlist
        with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
            torch.load(runner_checkpoint)
    else:  # torch < 2.6: torch's full pickle load, as without saevit_mm
        assert 'message_hub' in torch.load(runner_checkpoint)


@pytest.mark.skipif(
    not HAS_SAFE_GLOBALS,
    reason='torch.serialization.add_safe_globals needs torch >= 2.4')
def test_globals_the_user_allowed_are_allowed(tmp_path):
    path = tmp_path / 'fraction.pth'
    torch.save(dict(ratio=Fraction(1, 3)), path)
    with pytest.raises(CheckpointRefused, match='Fraction'):
        safe_load_checkpoint(str(path))
    saved = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([Fraction])
    try:
        assert safe_load_checkpoint(str(path))['ratio'] == Fraction(1, 3)
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)


def test_numpy_allowlist_builds_without_np_dtypes(monkeypatch):
    """numpy < 1.25 has no ``np.dtypes`` (its dtypes pickle as plain
    ``np.dtype``): building the allowlist must not need it."""
    from types import SimpleNamespace

    from saevit_mm.engine import checkpoint_unpickler
    numpy_1_24 = SimpleNamespace(
        **{name: getattr(np, name)
           for name in ('empty', 'float64', 'ndarray', 'dtype')})
    monkeypatch.setattr(checkpoint_unpickler, 'np', numpy_1_24)
    entries = checkpoint_unpickler._numpy_globals()
    assert entries['numpy.dtype'] is np.dtype
    assert entries['numpy._core.multiarray._reconstruct'] is entries[
        'numpy.core.multiarray._reconstruct']
