"""ONNX export of a backbone with static shapes, checked with onnxruntime.

torch 2.14 defaults ``torch.onnx.export`` to the dynamo exporter, which needs
``onnxscript`` (not a torch dependency) and fails on many detection models.
This module uses the TorchScript exporter (``dynamo=False``) with a fixed
input shape: SAA pads the input to a multiple of its sample ratio, and a
static shape turns that padding into constants.
"""
import inspect
import os
import warnings
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

__all__ = ['export_onnx', 'run_onnx', 'check_onnx']

DEFAULT_OPSET = 17


def _as_tuple(outputs: object) -> tuple:
    if isinstance(outputs, torch.Tensor):
        return (outputs, )
    return tuple(outputs)


def export_onnx(model: nn.Module,
                input_shape: Sequence[int],
                path: Union[str, os.PathLike],
                opset_version: int = DEFAULT_OPSET,
                device: Union[str, torch.device] = 'cpu') -> List[str]:
    """Export ``model`` (eval mode) to ``path`` for one static input shape.

    Args:
        model: A module whose forward takes one image tensor and returns a
            tensor or a tuple of tensors (a backbone).
        input_shape: ``(N, C, H, W)`` of the exported graph.
        path: Output ``.onnx`` file.
        opset_version: ONNX opset. Defaults to 17.
        device: Device on which the model is traced. Defaults to ``'cpu'``.

    Returns:
        The names of the graph outputs (``out0``, ``out1``, ...).
    """
    model.eval()  # not chained: some host train() overrides return None
    model.to(device)
    dummy = torch.randn(*input_shape, device=device)
    with torch.no_grad():
        num_outputs = len(_as_tuple(model(dummy)))
    output_names = [f'out{i}' for i in range(num_outputs)]
    # the TorchScript exporter: the default before torch 2.5 (which has
    # no ``dynamo`` argument), chosen explicitly after
    tracer = {'dynamo': False} if 'dynamo' in inspect.signature(
        torch.onnx.export).parameters else {}
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo, and the
        # tracer warns about python-side shape arithmetic (static by design)
        warnings.simplefilter('ignore')
        torch.onnx.export(
            model, (dummy, ),
            str(path),
            input_names=['input'],
            output_names=output_names,
            opset_version=opset_version,
            do_constant_folding=True,
            **tracer)
    return output_names


def run_onnx(path: Union[str, os.PathLike],
             inputs: np.ndarray,
             providers: Optional[Sequence[str]] = None) -> List[np.ndarray]:
    """Run an exported graph with onnxruntime.

    Args:
        path: The ``.onnx`` file.
        inputs: The input image batch.
        providers: onnxruntime execution providers. Defaults to ``None``:
            ``CPUExecutionProvider``.

    Returns:
        The graph outputs, in order.
    """
    import onnxruntime as ort
    session = ort.InferenceSession(
        str(path), providers=list(providers or ['CPUExecutionProvider']))
    name = session.get_inputs()[0].name
    return session.run(None, {name: inputs.astype(np.float32)})


def check_onnx(model: nn.Module,
               path: Union[str, os.PathLike],
               input_shape: Sequence[int],
               seed: int = 0) -> Dict[str, float]:
    """Compare an exported graph with the eager model on a random input.

    Args:
        model: The eager model that was exported (eval mode).
        path: The ``.onnx`` file.
        input_shape: The static ``(N, C, H, W)`` of the export.
        seed: Seed of the random input. Defaults to 0.

    Returns:
        ``{output name: max absolute difference}``, plus ``'max_abs_ref'``,
        the largest absolute value of the eager outputs (for scale).
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*input_shape, generator=generator)
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        ref = [t.float().cpu().numpy() for t in _as_tuple(model(x.to(device)))]
    got = run_onnx(path, x.numpy())
    if len(got) != len(ref):
        raise RuntimeError(f'ONNX graph has {len(got)} outputs, the model '
                           f'{len(ref)}')
    diffs = {}
    for i, (a, b) in enumerate(zip(ref, got)):
        if a.shape != b.shape:
            raise RuntimeError(
                f'output {i}: ONNX shape {b.shape} != eager shape {a.shape}')
        diffs[f'out{i}'] = float(np.abs(a - b).max())
    diffs['max_abs_ref'] = float(max(np.abs(a).max() for a in ref))
    return diffs
