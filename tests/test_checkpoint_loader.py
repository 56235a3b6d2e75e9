"""Checkpoint loading with mmengine 0.10.7, on every torch we support.

torch >= 2.6 (``torch.load`` defaults to ``weights_only=True``): a tiny
mmengine Runner trains on CPU, is interrupted, resumes from its own
checkpoint and must end where an uninterrupted run ends; a runner checkpoint
written under numpy 1.x (``numpy.core.*`` names) loads; a pure-tensor file
loads through ``init_cfg=Pretrained``; a file holding an arbitrary pickled
object or ``os.system`` is refused with a message naming it; torch's opt-out
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is honoured.

torch < 2.6 (an unrestricted pickle load by default, which mmengine works
with): importing saevit_mm registers nothing, and the same checkpoints load.
"""
import collections
import contextlib
import json
import os
import pickle
import pickletools
import re
import struct
import subprocess
import sys
import zipfile
from fractions import Fraction
from pathlib import Path
from typing import Any, List

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

import saevit_mm  # noqa: F401  (registers the loader on torch >= 2.6)
from saevit_mm.engine.checkpoint_loader import safe_load_checkpoint

MAX_ITERS = 9
REPO = Path(__file__).resolve().parents[1]

# Read here, not imported from saevit_mm, so that a wrong version check in the
# package shows up as failing tests instead of skipped ones.
TORCH_LOAD_DEFAULTS_TO_WEIGHTS_ONLY = tuple(
    int(v) for v in torch.__version__.split('.')[:2]) >= (2, 6)
needs_weights_only_default = pytest.mark.skipif(
    not TORCH_LOAD_DEFAULTS_TO_WEIGHTS_ONLY,
    reason='torch < 2.6 loads with weights_only=False by default (an '
    'unrestricted pickle load, as mmengine expects); saevit_mm registers no '
    'loader there, so nothing of ours refuses anything')


class ToyModel(BaseModel):
    """A regression model small enough to train in a second."""

    def __init__(self, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.net = nn.Sequential(
            nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x, y=None, mode='tensor'):
        out = self.net(x)
        if mode == 'loss':
            return dict(loss=((out - y)**2).mean())
        if mode == 'predict':
            return [dict(pred=o, gt=t) for o, t in zip(out, y)]
        return out


class MSEMetric(BaseMetric):
    """Mean squared error of the toy model's predictions."""

    def process(self, data_batch, data_samples):
        self.results.extend(
            float(((s['pred'] - s['gt'])**2).mean()) for s in data_samples)

    def compute_metrics(self, results):
        return dict(mse=sum(results) / len(results))


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


def toy_dataset(n: int = 32):
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(n, 4, generator=gen)
    ys = xs[:, :2] * 2 - xs[:, 2:]
    return [dict(x=x, y=y) for x, y in zip(xs, ys)]


def build_runner(work_dir, custom_hooks=(), resume=False, load_from=None):
    torch.manual_seed(0)  # the same initial weights for every run
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        experiment_name=f'toy_{len(os.listdir(work_dir))}',
        train_dataloader=dict(
            dataset=toy_dataset(),
            batch_size=4,
            sampler=dict(type='InfiniteSampler', shuffle=True, seed=0),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=3),
            dict(
                type='CosineAnnealingLR',
                by_epoch=False,
                begin=3,
                end=MAX_ITERS)
        ],
        train_cfg=dict(by_epoch=False, max_iters=MAX_ITERS),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=3,
                            by_epoch=False)),
        custom_hooks=[dict(type='EMAHook'), *custom_hooks],
        randomness=dict(seed=0),
        resume=resume,
        load_from=load_from,
        default_scope='mmengine')


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


@needs_weights_only_default
def test_arbitrary_pickled_object_is_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'extra': Payload()}, path)
    with pytest.raises(
            pickle.UnpicklingError,
            match=r"refused to unpickle.*posix\.getcwd"):
        safe_load_checkpoint(str(path))
    # and the Runner's path (load_checkpoint) goes through the same refusal
    with pytest.raises(pickle.UnpicklingError, match='refused to unpickle'):
        load_checkpoint(ToyModel(), str(path))


@needs_weights_only_default
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
# What importing saevit_mm changes, per torch version.


def test_import_registers_a_loader_only_where_torch_needs_it():
    """torch < 2.6: mmengine's loaders are untouched; torch >= 2.6: only the
    local-file loader (prefix '') is ours. A fresh interpreter, so that this
    test module's own import of saevit_mm does not count."""
    code = """if True:
        import json
        from mmengine.runner.checkpoint import CheckpointLoader
        before = dict(CheckpointLoader._schemes)
        import saevit_mm
        from saevit_mm.engine.checkpoint_loader import safe_load_checkpoint
        after = CheckpointLoader._schemes
        print(json.dumps(dict(
            order=[list(before), list(after)],
            changed=sorted(k for k in set(before) | set(after)
                           if before.get(k) is not after.get(k)),
            local_is_ours=after.get('') is safe_load_checkpoint)))
    """
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['order'][0] == result['order'][1]
    if TORCH_LOAD_DEFAULTS_TO_WEIGHTS_ONLY:
        assert result['changed'] == [''] and result['local_is_ours']
    else:
        assert result['changed'] == [], result


# ---------------------------------------------------------------------------
# A runner checkpoint as numpy 1.x writes it.

#: The numpy globals numpy 1.x pickles for arrays, scalars and dtypes
#: (measured under numpy 1.26.4: protocol 2, as torch.save writes).
NUMPY1_GLOBALS = {
    'numpy.core.multiarray._reconstruct', 'numpy.core.multiarray.scalar',
    'numpy.ndarray', 'numpy.dtype'
}


class NumpyInfoHook(Hook):
    """Keeps numpy values in the message hub's runtime info, which the
    runner saves in its checkpoints (CheckpointHook keeps ``best_score``
    there, of whatever type the metric returned)."""

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        loss = outputs['loss'].item()
        runner.message_hub.update_info(
            'numpy_values',
            dict(
                loss=np.float64(loss),
                iter=np.int64(runner.iter),
                improved=np.bool_(True),
                dtype=np.dtype('float32'),
                losses=np.array([loss, loss / 2], dtype=np.float32)))


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint the toy Runner wrote (numpy values, HistoryBuffer)."""
    work_dir = tmp_path_factory.mktemp('runner')
    build_runner(work_dir, [NumpyInfoHook()]).train()
    return work_dir / f'iter_{MAX_ITERS}.pth'


def pickle_globals(path: Path) -> List[str]:
    """``module.name`` of every GLOBAL in a torch.save file's pickle."""
    with zipfile.ZipFile(path) as zf:
        pickled = zf.read(
            next(n for n in zf.namelist() if n.endswith('/data.pkl')))
    return [
        arg.replace(' ', '.', 1)
        for opcode, arg, _ in pickletools.genops(pickled)
        if opcode.name == 'GLOBAL'
    ]


def as_numpy1_pickle(pickled: bytes) -> bytes:
    """Rename ``numpy._core.*`` globals as numpy 1.x writes them.

    torch.save pickles with protocol 2, where a global is the GLOBAL opcode
    followed by ``module\\nname\\n``: no length prefix and no frame, so the
    text can change length. Later protocols (SHORT_BINUNICODE + STACK_GLOBAL,
    FRAME) would need their lengths rewritten: refuse them. Under numpy 2.4
    this turns a pickle of arrays, scalars and dtypes into the very bytes
    numpy 1.26.4 writes for the same values (compared when this was written).
    """
    chunks, start = [], 0
    for opcode, arg, pos in pickletools.genops(pickled):
        assert opcode.name not in ('STACK_GLOBAL', 'FRAME', 'INST'), (
            f'{opcode.name} at byte {pos}: expected a protocol 2 pickle')
        if opcode.name != 'GLOBAL':
            continue
        module, name = arg.split(' ', 1)
        text = f'c{module}\n{name}\n'.encode()
        assert pickled[pos:pos + len(text)] == text, (pos, arg)
        if module == 'numpy._core' or module.startswith('numpy._core.'):
            module = 'numpy.core' + module[len('numpy._core'):]
            chunks += [pickled[start:pos], f'c{module}\n{name}\n'.encode()]
            start = pos + len(text)
    return b''.join(chunks + [pickled[start:]])


def write_as_numpy1(src: Path, dst: Path) -> None:
    """Copy a torch.save file with its pickle renamed by
    :func:`as_numpy1_pickle`, in torch's zip layout: the same records in the
    same order, stored, each record's data 64-byte aligned by padding in an
    ``FB`` extra field, as torch's writer does."""
    with zipfile.ZipFile(src) as zf:
        records = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(dst, 'w', zipfile.ZIP_STORED) as out:
        for info, data in records:
            if info.filename.endswith('/data.pkl'):
                data = as_numpy1_pickle(data)
            entry = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            # local file header: 30 bytes, the name, then the extra field
            # (4 bytes of id and size before the padding)
            header = 30 + len(info.filename.encode()) + 4
            padding = -(out.fp.tell() + header) % 64
            entry.extra = struct.pack('<HH', 0x4246, padding) + b'Z' * padding
            out.writestr(entry, data)


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


def test_numpy1_runner_checkpoint_loads(runner_checkpoint, tmp_path):
    numpy1 = tmp_path / 'numpy1.pth'
    write_as_numpy1(runner_checkpoint, numpy1)
    names = pickle_globals(numpy1)
    assert {n for n in names if n.startswith('numpy')} == NUMPY1_GLOBALS
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in names

    # the values, read back with a full pickle load of the file as saved
    expected = torch.load(
        runner_checkpoint, map_location='cpu', weights_only=False)
    info = expected['message_hub']['runtime_info']['numpy_values']
    assert type(info['loss']) is np.float64  # the fixture has numpy values
    # mmengine's loader, as --resume and load_from call it
    loaded = CheckpointLoader.load_checkpoint(str(numpy1), map_location='cpu')
    assert_same(loaded, expected)
    # and mmengine's load_checkpoint, as init_cfg=Pretrained calls it
    model = ToyModel()
    load_checkpoint(model, str(numpy1), map_location='cpu', strict=True)
    state = model.state_dict()
    assert list(state) == list(expected['state_dict'])
    for name in state:
        torch.testing.assert_close(
            state[name], expected['state_dict'][name], msg=name)


# ---------------------------------------------------------------------------
# What is refused, and torch's opt-out.


class SystemCall:
    """Unpickling this runs a shell command through os.system."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command, ))


@needs_weights_only_default
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
    # the payload is live: a full pickle load runs it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_torch_opt_out_loads_a_trusted_file(tmp_path, monkeypatch):
    """``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (read by torch.load at call
    time) turns weights-only loading off for our loader as for torch's."""
    monkeypatch.delenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', raising=False)
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)
    path = tmp_path / 'trusted.pth'
    trusted = dict(state_dict=dict(w=torch.ones(2)), ratio=Fraction(1, 3))
    torch.save(trusted, path)
    if TORCH_LOAD_DEFAULTS_TO_WEIGHTS_ONLY:  # the file needs the opt-out
        with pytest.raises(
                pickle.UnpicklingError,
                match=r'refused to unpickle .*fractions\.Fraction'):
            CheckpointLoader.load_checkpoint(str(path))
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    if TORCH_LOAD_DEFAULTS_TO_WEIGHTS_ONLY:
        # torch's own warning: its opt-out path ran, weights_only unset
        opted_out = pytest.warns(
            UserWarning, match='TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected')
    else:  # torch < 2.6 loads with weights_only=False anyway
        opted_out = contextlib.nullcontext()
    with opted_out:
        loaded = CheckpointLoader.load_checkpoint(str(path))
    assert type(loaded['ratio']) is Fraction and loaded['ratio'] == Fraction(
        1, 3)


# ---------------------------------------------------------------------------
# The allowlist is ours only while our loader runs.


@needs_weights_only_default
def test_allowlist_is_widened_only_during_the_load(runner_checkpoint):
    before = set(torch.serialization.get_safe_globals())
    CheckpointLoader.load_checkpoint(str(runner_checkpoint))
    assert set(torch.serialization.get_safe_globals()) == before
    # a plain torch.load elsewhere in the process: torch's allowlist only
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(runner_checkpoint)


@needs_weights_only_default
def test_globals_the_user_allowed_stay_allowed(runner_checkpoint):
    saved = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([HistoryBuffer, np.ndarray])
    try:
        CheckpointLoader.load_checkpoint(str(runner_checkpoint))
        still_allowed = set(torch.serialization.get_safe_globals())
        assert {HistoryBuffer, np.ndarray} <= still_allowed
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)


def test_numpy_allowlist_builds_without_np_dtypes(monkeypatch):
    """numpy < 1.25 has no ``np.dtypes`` (its dtypes pickle as plain
    ``np.dtype``): building the allowlist must not need it."""
    from types import SimpleNamespace

    from saevit_mm.engine import checkpoint_loader
    numpy_1_24 = SimpleNamespace(
        **{name: getattr(np, name)
           for name in ('empty', 'float64', 'ndarray', 'dtype')})
    monkeypatch.setattr(checkpoint_loader, 'np', numpy_1_24)
    entries = checkpoint_loader._numpy_globals()
    assert np.dtype in [e[0] if isinstance(e, tuple) else e for e in entries]
