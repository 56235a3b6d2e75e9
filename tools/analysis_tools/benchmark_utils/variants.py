"""Deploy variants of a model for the benchmark: fused BN, ONNX, compile.

Each variant comes with its check against the eager model (max absolute
difference on a random batch) and, where it applies, its set-up time.
"""
import copy
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import numpy as np
import torch
from torch import nn

from saevit_mm.deploy import export_onnx, switch_to_deploy

__all__ = ['Variant', 'VARIANTS', 'build_variant']

VARIANTS = ('fuse', 'onnx', 'compile')


@dataclass
class Variant:
    """A runnable deploy variant.

    Attributes:
        name: Display name, e.g. ``'SAEViT-t [fused]'``.
        forward: ``forward(batch)`` running the variant (the caller
            disables autograd).
        info: Check results and set-up facts (JSON-ready).
        batch_sizes: Batch sizes it is measured at (``None``: any).
    """

    name: str
    forward: Callable[[torch.Tensor], object]
    info: Dict[str, object] = field(default_factory=dict)
    batch_sizes: Optional[tuple] = None


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max())


def _fused(model: nn.Module, name: str, x: torch.Tensor) -> Variant:
    fused = copy.deepcopy(model)
    folded = switch_to_deploy(fused, example_input=x[:1])
    with torch.no_grad():
        diff = _max_diff(model(x[:2]), fused(x[:2]))
    return Variant(f'{name} [fused]', fused,
                   dict(folded_bn=len(folded), max_abs_diff=diff))


def _compiled(model: nn.Module, name: str, x: torch.Tensor) -> Variant:
    # static shapes: one graph per batch size, no dynamic-shape guards
    compiled = torch.compile(copy.deepcopy(model), dynamic=False)
    start = time.perf_counter()
    with torch.no_grad():
        out = compiled(x)
    setup = time.perf_counter() - start
    with torch.no_grad():
        diff = _max_diff(model(x), out)
    return Variant(
        f'{name} [compiled]',
        compiled,
        dict(
            compile_s=setup,
            max_abs_diff=diff,
            batch=x.shape[0],
            note='inductor, dynamic=False; measured at this batch only '
            '(another batch size would compile again)'),
        batch_sizes=(x.shape[0], ))


def _onnx(model: nn.Module, name: str, x: torch.Tensor,
          device: torch.device) -> Variant:
    import onnxruntime as ort
    fd, path = tempfile.mkstemp(suffix='.onnx')
    os.close(fd)
    try:
        start = time.perf_counter()
        export_onnx(model, tuple(x[:1].shape), path, device=device)
        export_s = time.perf_counter() - start
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(
            path, opts, providers=['CPUExecutionProvider'])
    finally:
        os.unlink(path)
    input_name = session.get_inputs()[0].name

    def forward(batch: torch.Tensor) -> np.ndarray:
        array = batch.contiguous().cpu().numpy()
        return session.run(None, {input_name: array})[0]

    with torch.no_grad():
        ref = model(x[:1])
    diff = _max_diff(ref, torch.from_numpy(forward(x[:1])))
    return Variant(
        f'{name} [onnxruntime]',
        forward,
        dict(
            export_s=export_s,
            max_abs_diff=diff,
            batch=1,
            provider='CPUExecutionProvider',
            opset=17),
        batch_sizes=(1, ))


def build_variant(kind: str, model: nn.Module, name: str,
                  x: torch.Tensor) -> Variant:
    """Build one deploy variant of ``model`` (an eval-mode classifier).

    Args:
        kind: One of :data:`VARIANTS`.
        model: The eager model (left unchanged).
        name: Display name of the eager model.
        x: The throughput batch, on the model's device. ``compile``
            compiles and checks at this shape, ``fuse`` checks on two
            images, ``onnx`` exports and checks at batch 1.
    """
    if kind == 'fuse':
        return _fused(model, name, x)
    if kind == 'compile':
        return _compiled(model, name, x)
    if kind == 'onnx':
        return _onnx(model, name, x, x.device)
    raise ValueError(f'unknown variant {kind!r}; choose from {VARIANTS}')
