"""What a forward costs where FLOPs do not tell: ops dispatched and bytes
kept for backward.

Two device-independent measures, next to FLOPs and timings:

- :func:`count_aten_ops`: aten operators dispatched while a function runs
  (forward, and backward when the function calls it), seen by a
  ``TorchDispatchMode``. Views (also ``_unsafe_view``, the view ``reshape``
  returns of a copy) and ``detach`` are not counted: they launch no
  kernel. On a GPU every other op is at least one kernel launch, and at
  small batches launches bound the latency of a lightweight model.
- :func:`saved_tensor_bytes`: bytes of the unique storages autograd keeps for
  backward (``torch.autograd.graph.saved_tensors_hooks``), parameters
  excluded: the activation memory of a training step, whatever the device.
"""
from collections import Counter
from typing import Callable, Dict, Tuple, TypeVar

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ['count_aten_ops', 'saved_tensor_bytes', 'train_step_cost']

T = TypeVar('T')

#: Not kernels: aliasing ops outside the ``is_view`` set (``reshape`` of a
#: copy returns an ``_unsafe_view`` of it, which moves no data).
_NOT_KERNELS = {'detach', 'alias', 'lift_fresh', 'lift', '_unsafe_view'}


def _is_kernel(func) -> bool:
    packet = func.overloadpacket
    return not (getattr(func, 'is_view', False)
                or packet.__name__ in _NOT_KERNELS)


class _OpCounter(TorchDispatchMode):
    """Count every aten op dispatched (views excluded) by name."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if _is_kernel(func):
            self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def count_aten_ops(fn: Callable[[], T]) -> Tuple[Counter, T]:
    """Run ``fn()`` and count the aten ops it dispatches.

    Returns:
        The counts by op name (``sum(counts.values())`` is the total) and
        what ``fn`` returned.

    Example:
        >>> import torch
        >>> counts, _ = count_aten_ops(lambda: torch.ones(3).add(1).relu())
        >>> sorted(counts.items())
        [('add', 1), ('ones', 1), ('relu', 1)]
    """
    counter = _OpCounter()
    with counter:
        out = fn()
    return counter.counts, out


def saved_tensor_bytes(fn: Callable[[], T],
                       exclude: Tuple[Tensor, ...] = ()) -> Tuple[int, T]:
    """Run ``fn()`` and add up the bytes of the unique storages that
    autograd saves for backward meanwhile, except those of ``exclude``
    (e.g. the parameters).

    The saved tensors are held here until ``fn`` returns (as autograd
    would hold them until backward), then released: autograd keeps a
    placeholder instead (a tensor returned by the hook that its own node
    saves as an output would form a reference cycle that outlives the
    graph), so the graph is for measuring; backward through it raises.

    Returns:
        The bytes and what ``fn`` returned.

    Example:
        >>> import torch
        >>> w = torch.ones(4, requires_grad=True)
        >>> nbytes, _ = saved_tensor_bytes(lambda: (w * 2).exp(), (w, ))
        >>> nbytes  # exp keeps its float32 output of 4 elements
        16
    """
    excluded = {t.untyped_storage().data_ptr() for t in exclude}
    storages: Dict[int, object] = {}  # alive: no address is reused

    def pack(tensor: Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            storages[storage.data_ptr()] = storage

    def unpack(_) -> Tensor:
        raise RuntimeError('saved_tensor_bytes keeps no saved tensor: the '
                           'graph it measured cannot run backward.')

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        out = fn()
    nbytes = sum(storage.nbytes() for storage in storages.values())
    storages.clear()
    return nbytes, out


def train_step_cost(model: nn.Module,
                    x: Tensor,
                    count_ops: bool = True) -> Dict[str, int]:
    """One training step of a backbone as the benchmark times it: train
    mode, forward, backward of the mean of all its outputs.

    Args:
        model: The backbone (its gradients are cleared afterwards).
        x: Its input.
        count_ops: Count the ops too (another forward and the backward).
            Defaults to True.

    Returns:
        ``saved_bytes`` (parameters excluded) and, with ``count_ops``,
        ``ops_forward`` and ``ops_train`` (forward + backward).
    """
    model.train()
    params = tuple(model.parameters())

    def forward() -> Tensor:
        outs = model(x)
        outs = [outs] if isinstance(outs, Tensor) else outs
        return sum(out.float().mean() for out in outs)

    nbytes = saved_tensor_bytes(forward, params)[0]  # the graph is freed
    if not count_ops:
        return dict(saved_bytes=nbytes)
    forward_ops, loss = count_aten_ops(forward)
    train_ops, _ = count_aten_ops(lambda: loss.backward())
    model.zero_grad(set_to_none=True)
    return dict(
        saved_bytes=nbytes,
        ops_forward=sum(forward_ops.values()),
        ops_train=sum(forward_ops.values()) + sum(train_ops.values()))
