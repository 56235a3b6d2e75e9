"""The hosts' training step under autocast, with the real demo configs.

Users train with ``tools/train.py --amp``: mmengine's ``AmpOptimWrapper``
(fp16 by default, bf16 with ``optim_wrapper.dtype``) runs the model's
``train_step`` -- ``data_preprocessor`` and ``forward(mode='loss')`` -- inside
``autocast``, then ``parse_losses`` and ``update_params`` outside it. That
wrapper refuses the CPU (``tools/train.py --amp`` says so), so here the same
step runs with the config's own (plain) ``OptimWrapper`` and
``torch.autocast('cpu', dtype)`` where the wrapper puts its autocast; nothing
of OpenMMLab is mocked. For the classification, RetinaNet, Mask R-CNN,
Semantic FPN and UperNet demo configs, each built by the Runner as
``tools/train.py`` builds it (``saevit_mm.engine.cli``) with the tiny demo
data, in fp16 and in bf16:

- the loss of the first step -- same weights, batch and seed as a float32
  step, no drop path (:data:`NO_DROP_PATH`) -- is close to float32's, and
  autocast reaches the backbone;
- ``STEPS`` optimizer steps on the runner's train dataloader give finite
  losses every step and finite, updated weights after the last.

Where the stack's torch has no CPU fp16 autocast (torch 2.1.2 refuses it:
"AutocastCPU only support Bfloat16"), the fp16 cases skip with the reason;
bf16 runs everywhere.
What the CPU cannot show of the GPU path is skipped or marked xfail with the
reason (:data:`FP16_BACKWARD_SLOW`, :func:`cpu_only_host_failure`); nothing
in the backbone is excused that way.
"""
import copy
import math
import os
import random
import re
import traceback
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch
from e2e_utils import DEMO_CONFIGS, demo_data_root

#: Optimizer steps under autocast per config and dtype.
STEPS = 3
SEED = 0
#: Demo config name -> host scope and pytest marker.
CASES = {
    'cls': ('mmpretrain', 'cls'),
    'retinanet': ('mmdet', 'det'),
    'mask-rcnn': ('mmdet', 'det'),
    'fpn': ('mmseg', 'seg'),
    'upernet': ('mmseg', 'seg'),
}
DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}
#: Only the run's size, process layout and console change: two images a
#: batch, no worker processes, warnings only. The model, pipeline,
#: optimizer and loss are the config's.
OPTIONS = [
    'train_dataloader.batch_size=2',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'log_level=WARNING',
]
#: For the first-step comparison only: no stochastic depth. mmcv's
#: ``DropPath`` draws its mask in the input's dtype (``keep_prob +
#: torch.rand(shape, dtype=x.dtype)``, floored), so under autocast the same
#: seed gives another mask whenever a draw lands within a rounding step of
#: the drop rate: a whole branch of one image kept in one run and dropped in
#: the other. Measured on the classification demo over 45 draws (three
#: batches, fifteen seeds): with drop path the loss moved up to 7.4e-3
#: (fp16) and 3.1e-2 (bf16, torch 2.1.2) against float32, without it at
#: most 3.0e-4 and 3.1e-3. The optimizer steps keep the config's drop
#: path.
NO_DROP_PATH = ['model.backbone.drop_path_rate=0.0']
#: Relative difference of the first step's loss (``parse_losses``' sum)
#: under autocast against float32, same weights, batch and seed. fp16 keeps
#: 11 significant bits, bf16 8 (relative rounding up to 2^-11 and 2^-8); the
#: loss averages many terms, so it moves much less than single values.
#: Measured without drop path (:data:`NO_DROP_PATH`) from the initial
#: weights, torch 2.14 and (bf16) 2.1.2, classification over 100 draws (ten
#: batches, ten seeds), the dense configs over 15 (three batches, five
#: seeds): fp16 at most 8.7e-4 (classification; UperNet 3.2e-4, RetinaNet
#: 2.3e-4, FPN 6.3e-5), bf16 at most 5.1e-3 (classification, whose loss is
#: one cross-entropy of two images; RetinaNet 2.2e-3, UperNet 1.6e-3, FPN
#: 1.0e-3). The bounds leave about 6x headroom over the worst draw; a real
#: precision loss -- a layer overflowing fp16's range, a norm statistic
#: accumulated in bf16 -- moves the loss by more, or makes it non-finite
#: (checked separately).
TOLERANCE = {torch.float16: 5e-3, torch.bfloat16: 3e-2}
#: torch's CPU fp16 convolution backward is about 100x slower than float32
#: (torch 2.14, one thread: a 256-channel 3x3 convolution on a 2x256x20x32
#: map took 4.3 s in fp16, 0.04 s in float32 and 0.014 s in bf16), so one
#: fp16 step of a dense model (256-channel neck and heads) takes minutes
#: here (RetinaNet: 1.3 s forward, 195 s backward), a matter of torch's CPU
#: kernels, not of the model. The fp16 steps of the dense configs run with
#: this variable set to 1 (on a loaded 2-core machine: RetinaNet 401 s, FPN
#: 168 s, UperNet 1446 s); their first-step loss (a forward) is always
#: checked.
FP16_DENSE_STEPS_VAR = 'SAEVIT_TEST_FP16_DENSE_STEPS'
FP16_BACKWARD_SLOW = (
    'torch CPU fp16 convolution backward is ~100x slower than float32 (a '
    'dense config takes minutes a step here); set '
    f'{FP16_DENSE_STEPS_VAR}=1 to run these steps')


def cpu_autocast_unsupported(dtype: torch.dtype) -> Optional[str]:
    """Why this torch cannot autocast to ``dtype`` on the CPU, or None.

    torch 2.1.2 raises on ``torch.autocast('cpu', dtype=torch.float16)``;
    a torch that instead warns and disables autocast is caught by checking
    what a linear layer gives.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try:
            with torch.autocast('cpu', dtype=dtype):
                out = torch.nn.functional.linear(
                    torch.ones(2, 2), torch.ones(2, 2))
        except (RuntimeError, ValueError, AssertionError) as err:
            return (f'torch {torch.__version__}: torch.autocast("cpu", '
                    f'dtype={dtype}) raises {type(err).__name__}: {err}')
    if out.dtype != dtype:
        said = '; '.join(str(w.message) for w in caught) or 'no warning'
        return (f'torch {torch.__version__} has no CPU autocast to {dtype} '
                f'(a linear layer under it gives {out.dtype}; {said})')
    return None


#: mmcv's CPU ``nms`` reads the boxes as float32 only. Under CUDA autocast
#: ``exp`` runs in float32, so the RPN's decoded proposals
#: (``DeltaXYWHBBoxCoder``: ``pwh * dwh.exp()``) are float32 and mmcv's nms
#: takes them; under CPU autocast ``exp`` stays in fp16/bf16 (so do the
#: priors, made in the score's dtype) and the CPU nms refuses them. A
#: property of the hosts on the CPU, not of the backbone, which has run by
#: then.
_CPU_NMS_DTYPE = re.compile(
    r'expected scalar type Float but found (Half|BFloat16)')


def cpu_only_host_failure(err: BaseException) -> Optional[str]:
    """The reason, if ``err`` is the CPU-only failure of mmcv's nms on the
    RPN's low-precision proposals (:data:`_CPU_NMS_DTYPE`); else None."""
    if not (isinstance(err, RuntimeError)
            and _CPU_NMS_DTYPE.fullmatch(str(err))):
        return None
    frames = traceback.extract_tb(err.__traceback__)
    if not any(
            Path(f.filename).parts[-3:] == ('mmcv', 'ops', 'nms.py')
            for f in frames):
        return None
    return ('CPU autocast only: mmcv\'s CPU nms takes float32 boxes, and '
            'the RPN proposals stay in the autocast dtype on the CPU (CUDA '
            f'autocast computes their exp in float32): {err}')


def seed(value: int = SEED) -> None:
    """Seed what the model's training forward draws from (drop path, the
    detectors' sampling)."""
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def as_floats(log_vars: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """The logged values of ``parse_losses`` as floats: ``loss`` (their
    sum, what is optimised), each loss, and accuracies."""
    return {
        k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
        for k, v in log_vars.items()
    }


def relative(value: float, reference: float) -> float:
    return abs(value - reference) / max(abs(reference), 1e-12)


class Harness:
    """One Runner of a demo config (with ``options`` after
    :data:`OPTIONS`), its model's initial state, the first :data:`STEPS`
    batches of its train dataloader and the float32 losses of the first
    batch."""

    def __init__(self,
                 name: str,
                 work_dir: Path,
                 data_root: Path,
                 options: Sequence[str] = ()) -> None:
        from mmengine.model import BaseModel, is_model_wrapper

        from saevit_mm.engine.cli import (apply_train_args, build_runner,
                                          load_config, train_parser)
        self.name = name
        self.scope = CASES[name][0]
        args = train_parser().parse_args([
            str(DEMO_CONFIGS[name]), '--work-dir',
            str(work_dir), '--cfg-options', *OPTIONS, *options
        ])
        # SAEVIT_DEMO_DATA is read when the config file is loaded
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv('SAEVIT_DEMO_DATA', str(data_root))
            self.cfg = apply_train_args(load_config(args), args)
        self.runner = build_runner(self.cfg)
        assert not is_model_wrapper(self.runner.model)
        self.model = self.runner.model
        # the step here is BaseModel.train_step with the AMP context: a host
        # model with its own train_step would need its own replica
        assert type(self.model).train_step is BaseModel.train_step, \
            f'{type(self.model).__name__} overrides train_step'
        self.model.init_weights()  # as Runner.train does
        self.initial = copy.deepcopy(self.model.state_dict())
        self.batches = self._take_batches(STEPS)
        self.reference = self.first_losses(torch.float32)

    def _take_batches(self, count: int) -> List[dict]:
        """The first ``count`` batches of the runner's train dataloader, as
        its loop takes them. One iterator, kept until the end: closing one
        closes mmengine's ``InfiniteSampler`` (the seg configs') for good;
        an epoch-based loader starts again when it ends."""
        loader = self.runner.train_dataloader
        batches: List[dict] = []
        iterator = iter(loader)
        while len(batches) < count:
            try:
                batches.append(next(iterator))
            except StopIteration:
                assert batches, 'the train dataloader is empty'
                iterator = iter(loader)
        return batches

    def scope_context(self):
        from mmengine.registry import DefaultScope
        return DefaultScope.overwrite_default_scope(self.scope)

    def reset(self) -> None:
        """The initial weights and buffers (BN statistics) again."""
        self.model.load_state_dict(self.initial)
        self.model.train()  # as the train loop does before its epochs

    def forward(self, data: dict, dtype: torch.dtype, optim_wrapper=None):
        """``BaseModel.train_step`` up to ``parse_losses``, with
        ``autocast`` where ``AmpOptimWrapper.optim_context`` puts it
        (float32: none)."""
        amp = (
            torch.autocast('cpu', dtype=dtype)
            if dtype != torch.float32 else nullcontext())
        wrapper_context = (
            optim_wrapper.optim_context(self.model)
            if optim_wrapper is not None else nullcontext())
        with wrapper_context, amp:
            data = self.model.data_preprocessor(data, True)
            losses = self.model._run_forward(data, mode='loss')
        return self.model.parse_losses(losses)

    def first_losses(self, dtype: torch.dtype) -> Dict[str, float]:
        """The logged losses of the first batch from the initial weights,
        seeded."""
        self.reset()
        seed()
        with self.scope_context():
            _, log_vars = self.forward(copy.deepcopy(self.batches[0]), dtype)
        return as_floats(log_vars)

    def optim_wrapper(self):
        """A fresh optimizer wrapper of the config, as Runner.train builds
        it (``initialize_count_status`` included)."""
        from mmengine.optim import OptimWrapper
        wrapper = self.runner.build_optim_wrapper(
            copy.deepcopy(self.cfg.optim_wrapper))
        assert type(wrapper) is OptimWrapper, type(wrapper)
        wrapper.initialize_count_status(self.model, 0, STEPS)
        return wrapper


@pytest.fixture(scope='module')
def harnesses(tmp_path_factory):
    """A factory of :class:`Harness`, one config and options at a time
    (the previous runner is dropped when another is asked for)."""
    data_root = demo_data_root(tmp_path_factory)
    current: Dict[Tuple[str, Tuple[str, ...]], Harness] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see conftest.single_thread

    def get(name: str, options: Sequence[str] = ()) -> Harness:
        key = (name, tuple(options))
        if key not in current:
            current.clear()
            current[key] = Harness(name,
                                   tmp_path_factory.mktemp(f'amp_{name}'),
                                   data_root, options)
        return current[key]

    yield get
    current.clear()
    torch.set_num_threads(threads)


def _params():
    # config-major order: each config's runner is built once
    for name, (_, marker) in CASES.items():
        for key, dtype in DTYPES.items():
            yield pytest.param(
                name,
                dtype,
                marks=[getattr(pytest.mark, marker), pytest.mark.slow],
                id=f'{name}-{key}')


PARAMS = list(_params())


def _harness(harnesses,
             name: str,
             dtype: torch.dtype,
             options: Sequence[str] = ()) -> 'Harness':
    """The config's harness, or skip: host not installed, or no CPU
    autocast to ``dtype`` in this torch."""
    pytest.importorskip(f'{CASES[name][0]}.models')
    pytest.importorskip('mmcv.ops')
    reason = cpu_autocast_unsupported(dtype)
    if reason:
        pytest.skip(reason)
    return harnesses(name, options)


def _xfail_cpu_only(err: BaseException) -> None:
    """xfail on :func:`cpu_only_host_failure`; any other error fails."""
    reason = cpu_only_host_failure(err)
    if reason is None:
        raise err
    pytest.xfail(reason)


class DtypeWatch:
    """Output dtypes of the convolutions and linear layers of a module."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.dtypes = set()
        self.handles = [
            m.register_forward_hook(self.hook) for m in module.modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
        ]

    def hook(self, module, args, output) -> None:
        if isinstance(output, torch.Tensor):
            self.dtypes.add(output.dtype)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize('name,dtype', PARAMS)
def test_first_step_loss_under_autocast_is_close_to_float32(
        harnesses, name, dtype):
    harness = _harness(harnesses, name, dtype, NO_DROP_PATH)
    reference = harness.reference
    assert math.isfinite(reference['loss']), reference

    watch = DtypeWatch(harness.model.backbone)
    try:
        losses = harness.first_losses(dtype)
    except RuntimeError as err:
        _xfail_cpu_only(err)
    finally:
        watch.remove()
    assert dtype in watch.dtypes, \
        f'backbone conv/linear outputs {watch.dtypes} under {dtype} autocast'
    assert losses.keys() == reference.keys()
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    assert not bad, f'non-finite under {dtype} autocast: {bad}'

    diff = relative(losses['loss'], reference['loss'])
    each = {
        k: relative(losses[k], reference[k])
        for k in reference if 'loss' in k and k != 'loss'
    }
    # shown with -rP (or -s): the measured differences
    print(f'{name} {dtype}: loss float32 {reference["loss"]:.6f}, autocast '
          f'{losses["loss"]:.6f}, relative {diff:.2e}' +
          ''.join(f'; {k} {d:.1e}' for k, d in each.items()))
    assert diff < TOLERANCE[dtype], \
        (f'first-step loss {losses["loss"]} under {dtype} autocast against '
         f'float32 {reference["loss"]}: relative {diff:.3g} (each loss: '
         f'{each})')


@pytest.mark.parametrize('name,dtype', PARAMS)
def test_optimizer_steps_under_autocast_stay_finite(harnesses, name, dtype):
    harness = _harness(harnesses, name, dtype)
    if (dtype == torch.float16 and CASES[name][1] != 'cls'
            and os.environ.get(FP16_DENSE_STEPS_VAR) != '1'):
        pytest.skip(FP16_BACKWARD_SLOW)
    model = harness.model
    harness.reset()
    optim_wrapper = harness.optim_wrapper()
    history = []
    seed()
    with harness.scope_context():
        for batch in harness.batches:
            try:
                parsed, log_vars = harness.forward(
                    copy.deepcopy(batch), dtype, optim_wrapper)
            except RuntimeError as err:
                _xfail_cpu_only(err)
            optim_wrapper.update_params(parsed)
            history.append(as_floats(log_vars))

    assert len(history) == STEPS
    for step, losses in enumerate(history):
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        assert not bad, f'step {step}: non-finite {bad} ({history})'
    not_finite = [
        k for k, v in model.state_dict().items()
        if v.is_floating_point() and not torch.isfinite(v).all()
    ]
    assert not not_finite, f'non-finite after {STEPS} steps: {not_finite}'
    moved = [
        k for k, p in model.named_parameters()
        if p.requires_grad and not torch.equal(p, harness.initial[k])
    ]
    assert moved, f'no parameter changed in {STEPS} steps'
