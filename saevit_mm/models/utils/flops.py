"""Parameter and FLOP counting with mmengine's analysis tools, attention
included.

mmengine 0.10.7's :class:`~mmengine.analysis.FlopAnalyzer` has no handle for
``aten::scaled_dot_product_attention``: it warns "Unsupported operator" and
counts 0 for it. :func:`sdpa_flop_jit` is that handle and
:func:`build_flop_analyzer` registers it. FLOPs follow mmengine's (fvcore's)
convention: one fused multiply-add is one FLOP; softmax, activations and
additions are not counted; BatchNorm in eval mode counts 2 per element.
"""
from collections import Counter
from typing import Any, Dict, List, Sequence, Tuple, Union

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from torch import nn

__all__ = [
    'SDPA_OP', 'sdpa_flop_jit', 'build_flop_analyzer', 'count_complexity'
]

#: The TorchScript name of ``F.scaled_dot_product_attention``.
SDPA_OP = 'aten::scaled_dot_product_attention'


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs of ``F.scaled_dot_product_attention(q, k, v, ...)``.

    ``q @ k^T`` costs ``prod(batch) * Lq * Lk * E`` multiply-adds and
    ``attn @ v`` ``prod(batch) * Lq * Lk * Ev``, where ``q`` is
    ``(*batch, Lq, E)``, ``k`` ``(*batch, Lk, E)`` and ``v``
    ``(*batch, Lk, Ev)`` (grouped-query ``k``/``v`` with fewer heads are
    broadcast, so the output's batch dims are used). The softmax and the
    scaling are not counted, as for every other elementwise op.

    Args:
        inputs: The op's inputs (``torch._C.Value``), ``q, k, v, ...``.
        outputs: The op's outputs; ``outputs[0]`` is ``(*batch, Lq, Ev)``.

    Returns:
        The number of multiply-adds.
    """
    q_shape, k_shape = get_shape(inputs[0]), get_shape(inputs[1])
    out_shape = get_shape(outputs[0])
    batch = 1
    for size in out_shape[:-2]:
        batch *= size
    len_q, dims_v = out_shape[-2:]
    len_k, dims_qk = k_shape[-2], q_shape[-1]
    return batch * len_q * len_k * (dims_qk + dims_v)


def build_flop_analyzer(
        model: nn.Module, inputs: Union[torch.Tensor,
                                        Tuple[torch.Tensor, ...]]
) -> FlopAnalyzer:
    """mmengine's ``FlopAnalyzer`` with the SDPA handle registered.

    Args:
        model: The model to analyse (put it in eval mode first).
        inputs: The inputs of ``model.forward``.

    Returns:
        The analyzer; call ``.total()``, ``.by_operator()`` etc.
    """
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(SDPA_OP, sdpa_flop_jit)
    return analyzer


def count_complexity(model: nn.Module,
                     input_shape: Sequence[int] = (3, 224, 224),
                     batch_size: int = 1,
                     warn_unsupported: bool = False) -> Dict[str, Any]:
    """Parameters and FLOPs of ``model`` on one random input.

    The model is analysed in eval mode (restored afterwards) on
    ``torch.randn(batch_size, *input_shape)`` placed on the model's device.

    Args:
        model: The model; its ``forward`` takes one tensor.
        input_shape: ``(C, H, W)`` of one input. Defaults to
            ``(3, 224, 224)``.
        batch_size: Batch size of the probe input. Defaults to 1.
        warn_unsupported: Let mmengine log the operators it cannot count
            (activations, additions, pooling); they are returned in
            ``'uncounted_ops'`` either way. Defaults to False.

    Returns:
        ``params`` (int), ``flops`` (int, multiply-adds), ``flops_by_op``
        (``Counter`` op name -> FLOPs; SDPA is ``'scaled_dot_product_
        attention'``) and ``uncounted_ops`` (``Counter`` op name -> number
        of calls that mmengine counted as 0).
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device('cpu')
    inputs = (torch.randn(batch_size, *input_shape, device=device), )
    was_training = model.training
    model.eval()
    try:
        analyzer = build_flop_analyzer(model, inputs)
        analyzer.unsupported_ops_warnings(warn_unsupported)
        analyzer.uncalled_modules_warnings(False)
        with torch.no_grad():
            flops = analyzer.total()
            by_op = Counter(analyzer.by_operator())
            uncounted = Counter(analyzer.unsupported_ops())
    finally:
        model.train(was_training)
    return dict(
        params=parameter_count(model)[''],
        flops=flops,
        flops_by_op=by_op,
        uncounted_ops=uncounted)
