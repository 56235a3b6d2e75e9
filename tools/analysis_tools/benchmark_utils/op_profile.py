"""Where a model's time goes: operator categories and stages.

:func:`profile_categories` runs ``torch.profiler`` on interleaved forward
passes of several models and sums each operator's own time into a category
(1x1 / depth-wise / other convolutions by kernel, BatchNorm, GELU,
attention, copies, additions, pooling, other). :func:`stage_profile` times
the stem and stages of SAEViT backbones with forward hooks, the models
interleaved too, and counts their multiply-adds, so that the rate of each
stage (multiply-adds per second) shows which part of a model uses the CPU
well.
"""
import statistics
import time
from collections import defaultdict
from typing import Dict, List, Sequence

import torch
from torch import nn

__all__ = ['op_category', 'profile_categories', 'stage_profile']

_CONV_OPS = ('aten::mkldnn_convolution', 'aten::_convolution',
             'aten::thnn_conv2d', 'aten::_slow_conv2d_forward',
             'aten::slow_conv_transpose2d', 'aten::cudnn_convolution')
_COPY_OPS = ('aten::cat', 'aten::copy_', 'aten::stack', 'aten::clone')
_ADD_OPS = ('aten::add', 'aten::add_', 'aten::addcmul', 'aten::mul',
            'aten::mul_')


def op_category(name: str, input_shapes: Sequence[Sequence[int]]) -> str:
    """Category of one profiler event (operator ``name`` and the shapes of
    its inputs; a convolution's second input is its weight)."""
    if name in _CONV_OPS:
        weight = input_shapes[1] if len(input_shapes) > 1 else []
        if len(weight) != 4:
            return 'conv (other)'
        kernel = f'{weight[2]}x{weight[3]}'
        if weight[1] == 1 and weight[0] > 1:
            return f'conv depth-wise {kernel}'
        return 'conv 1x1' if kernel == '1x1' else f'conv {kernel}'
    if 'batch_norm' in name:
        return 'batchnorm'
    if 'gelu' in name:
        return 'gelu'
    if 'scaled_dot_product' in name or name in ('aten::bmm', 'aten::softmax',
                                                'aten::_softmax'):
        return 'attention'
    if name in _COPY_OPS:
        return 'copy/cat'
    if name in _ADD_OPS:
        return 'add/mul'
    if 'pool' in name:
        return 'pool'
    return 'other'


def profile_categories(models: Dict[str, nn.Module], x: torch.Tensor,
                       rounds: int = 2) -> Dict[str, Dict[str, float]]:
    """Milliseconds per forward pass of each model in each category.

    The models run in turn, ``rounds`` times (one warm-up pass each first),
    under ``torch.inference_mode``; each pass is profiled on its own and the
    operators' self times are averaged over the rounds.

    Returns:
        ``{model name: {category: ms}}``.
    """
    from torch.profiler import ProfilerActivity, profile
    result = {name: defaultdict(float) for name in models}
    with torch.inference_mode():
        for model in models.values():
            model(x)
        for _ in range(rounds):
            for name, model in models.items():
                with profile(
                        activities=[ProfilerActivity.CPU],
                        record_shapes=True) as prof:
                    model(x)
                for event in prof.key_averages(group_by_input_shape=True):
                    category = op_category(event.key, event.input_shapes)
                    result[name][category] += \
                        event.self_cpu_time_total / 1e3 / rounds
    return {name: dict(times) for name, times in result.items()}


def _stage_modules(backbone: nn.Module) -> List[str]:
    names = [name for name in ('stem', ) if hasattr(backbone, name)]
    stages = getattr(backbone, 'stages', None)
    if stages is not None:
        names += [f'stages.{i}' for i in range(len(stages))]
    return names


def stage_profile(models: Dict[str, nn.Module],
                  x: torch.Tensor,
                  rounds: int = 3,
                  prefix: str = 'backbone.') -> Dict[str, Dict[str, Dict]]:
    """Median milliseconds and multiply-adds of the stem and of each stage
    of every model whose ``prefix`` submodule (``''``: the model itself)
    has ``stem`` and ``stages`` (as SAEViT); other models are left out.
    The models run in turn, ``rounds`` times (after one warm-up pass each),
    like :func:`profile_categories`.

    Returns:
        ``{model name: {stage: {'ms': ..., 'macs': ...}}}``, stages in
        forward order.
    """
    from saevit_mm.models.utils import build_flop_analyzer
    staged = {}
    for name, model in models.items():
        try:
            backbone = model.get_submodule(prefix.rstrip('.'))
        except AttributeError:  # no backbone there: not a staged model
            continue
        stages = _stage_modules(backbone)
        if stages:
            staged[name] = (model, backbone, stages)
    starts: Dict[str, float] = {}
    times: Dict[str, List[float]] = defaultdict(list)
    hooks = []
    for name, (_, backbone, stages) in staged.items():
        for stage in stages:
            key = f'{name}/{stage}'
            module = backbone.get_submodule(stage)
            hooks.append(
                module.register_forward_pre_hook(
                    lambda *_, k=key: starts.__setitem__(
                        k, time.perf_counter())))
            hooks.append(
                module.register_forward_hook(lambda *_, k=key: times[k].
                                             append(time.perf_counter() -
                                                    starts[k])))
    try:
        with torch.inference_mode():
            for model, _, _ in staged.values():
                model(x)
            times.clear()
            for _ in range(rounds):
                for model, _, _ in staged.values():
                    model(x)
    finally:
        for hook in hooks:
            hook.remove()
    result = {}
    for name, (model, _, stages) in staged.items():
        analyzer = build_flop_analyzer(model, (x, ))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        with torch.no_grad():
            macs = analyzer.by_module()
        result[name] = {
            stage: dict(
                ms=statistics.median(times[f'{name}/{stage}']) * 1e3,
                macs=float(macs[prefix + stage]))
            for stage in stages
        }
    return result
