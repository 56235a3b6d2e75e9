"""Where a model's time goes: operator categories and stages.

:func:`profile_categories` runs ``torch.profiler`` on interleaved forward
passes of several models and sums each operator's own time into a category
(1x1 / depth-wise / other convolutions by kernel, BatchNorm, GELU,
attention, copies, additions, pooling, other). :func:`stage_profile` times
an SAEViT backbone's stem and stages with forward hooks and counts their
multiply-adds, so that the rate of each stage (multiply-adds per second)
shows which part of a model uses the CPU well.
"""
import statistics
import time
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

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


def stage_profile(model: nn.Module,
                  x: torch.Tensor,
                  rounds: int = 3,
                  prefix: str = 'backbone.') -> Optional[Dict[str, Dict]]:
    """Median milliseconds and multiply-adds of the stem and of each stage
    of ``model``'s backbone (a module with ``stem`` and ``stages``, as
    SAEViT), or None for another model.

    Returns:
        ``{stage: {'ms': ..., 'macs': ...}}`` in forward order.
    """
    from saevit_mm.models.utils import build_flop_analyzer
    backbone = model.get_submodule(prefix.rstrip('.')) if prefix else model
    names = _stage_modules(backbone)
    if not names:
        return None
    starts: Dict[str, float] = {}
    times: Dict[str, List[float]] = {name: [] for name in names}
    hooks = []
    for name in names:
        module = backbone.get_submodule(name)
        hooks.append(
            module.register_forward_pre_hook(
                lambda *_, n=name: starts.__setitem__(n, time.perf_counter())))
        hooks.append(
            module.register_forward_hook(lambda *_, n=name: times[n].append(
                time.perf_counter() - starts[n])))
    try:
        with torch.inference_mode():
            model(x)
            for values in times.values():
                values.clear()
            for _ in range(rounds):
                model(x)
    finally:
        for hook in hooks:
            hook.remove()
    analyzer = build_flop_analyzer(model, (x, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        macs = analyzer.by_module()
    return {
        name: dict(
            ms=statistics.median(times[name]) * 1e3,
            macs=float(macs[prefix + name]))
        for name in names
    }
