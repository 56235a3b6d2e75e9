"""SAEViT under bf16 autocast on CPU (``torch.autocast('cpu',
dtype=torch.bfloat16)``), and the model itself in bf16.

A training forward and backward gives finite bf16 feature maps and a finite
float32 gradient for every trainable parameter, close to float32's with the
norm statistics fixed (``norm_eval=True``, as detection fine-tuning runs;
the batch-statistics case, against float64 and ResNet-18, is
``tests/test_amp_grad_error.py``). With the model in bf16, as CUDA autocast
hands SAA its input, no bf16 tensor reaches an operator that torch 2.1 lacks
a CUDA bf16 kernel for.
"""
import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from saevit_mm.models import SAEViT
from .utils import TINY_ARCH

ALL_STAGES = (0, 1, 2, 3)
#: The tiny arch has every layer type of the real ones (see ``TINY_ARCH``).
#: bf16 keeps 8 significant bits (relative rounding up to 2^-8); with fixed
#: norm statistics the feature maps measured at most 0.6% relative error and
#: the whole gradient at most 0.7%. The bounds leave 3-4x headroom; one
#: lost-precision step fails them (an fp8 rounding of the stem output gave
#: 3.1% at stage 0).
OUTPUT_TOLERANCE = 0.02
GRAD_TOLERANCE = 0.03


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``||actual - expected|| / ||expected||`` in float32."""
    actual, expected = actual.float(), expected.float()
    return ((actual - expected).norm() / expected.norm()).item()


def forward_backward(model, x, weights, bf16: bool):
    """Outputs and the gradient of every trainable parameter of one training
    forward and backward, under bf16 autocast or in float32."""
    model.zero_grad()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
        outs = model(x)
        # a fixed random projection: BN-normalised maps make losses such as
        # the mean square nearly constant, with vanishing gradients
        loss = sum((o.float() * w).sum() for o, w in zip(outs, weights))
    loss.backward()
    grads = {
        name: p.grad
        for name, p in model.named_parameters() if p.requires_grad
    }
    return outs, grads


ARCHS = [
    pytest.param(TINY_ARCH, (64, 64), id='tiny-64x64'),
    pytest.param(TINY_ARCH, (97, 131), id='tiny-97x131'),
]


def build(arch, **kwargs) -> SAEViT:
    model = SAEViT(
        dict(arch) if isinstance(arch, dict) else arch,
        out_indices=ALL_STAGES,
        **kwargs)
    model.init_weights()
    return model.train()


def projections(model, x):
    """Fixed random weights, one per output, for a loss whose gradient
    does not vanish: BN-normalised maps make losses such as the mean square
    nearly constant."""
    with torch.no_grad():
        return [torch.randn(o.shape) for o in model(x)]


@pytest.mark.parametrize('arch,size', ARCHS)
def test_bf16_autocast_trains_with_finite_bf16_outputs_and_grads(arch, size):
    model = build(arch)
    x = torch.randn(2, 3, *size)
    outs, grads = forward_backward(model, x, projections(model, x), True)
    for i, out in enumerate(outs):
        assert out.dtype == torch.bfloat16, \
            f'stage {i}: {out.dtype} under bf16 autocast'
        assert torch.isfinite(out).all(), f'stage {i}: non-finite output'
    assert grads
    for name, grad in grads.items():
        assert grad is not None, f'{name} received no gradient'
        assert grad.dtype == torch.float32, f'{name}: {grad.dtype}'
        assert torch.isfinite(grad).all(), f'{name}: non-finite gradient'
        assert grad.abs().sum() > 0, f'{name}: zero gradient'


def calibrate_norms(model: SAEViT, size) -> SAEViT:
    """Running statistics of the model's own activations (the cumulative
    average of a few training forwards), as a pretrained backbone has them:
    the init's (mean 0, var 1) would leave the un-normalised activations to
    grow stage by stage."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(2, 3, *size))
    return model


@pytest.mark.parametrize('arch,size', ARCHS)
def test_bf16_autocast_is_close_to_float32(arch, size):
    model = calibrate_norms(build(arch, norm_eval=True), size)
    model.train()  # norm_eval: the norms stay in eval mode
    assert not model.stages[0].blocks[0].norm1.training
    x = torch.randn(2, 3, *size)
    weights = projections(model, x)
    ref_outs, ref_grads = forward_backward(
        copy.deepcopy(model), x, weights, bf16=False)
    outs, grads = forward_backward(model, x, weights, bf16=True)

    for i, (out, ref) in enumerate(zip(outs, ref_outs)):
        assert (out.dtype, ref.dtype) == (torch.bfloat16, torch.float32)
        error = rel_error(out, ref)
        assert error < OUTPUT_TOLERANCE, \
            f'stage {i}: relative error {error:.4f} against float32'
    assert grads.keys() == ref_grads.keys()
    flat = torch.cat([grads[n].flatten() for n in grads])
    ref_flat = torch.cat([ref_grads[n].flatten() for n in grads])
    error = rel_error(flat, ref_flat)
    assert error < GRAD_TOLERANCE, \
        f'gradient: relative error {error:.4f} against float32'


#: aten operators with no CUDA bfloat16 kernel in torch 2.1 (pytorch issue
#: 117961: replication_pad2d on 2.1.2+cu121).
NO_CUDA_BF16_IN_TORCH_21 = {
    f'{op}{d}d{suffix}'
    for op in ('replication_pad', ) for d in (1, 2, 3)
    for suffix in ('', '_backward')
}


class _BF16Ops(TorchDispatchMode):
    """Names of the aten operators that receive a bfloat16 tensor."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tensors = [
            a for a in (*args, *(kwargs or {}).values())
            if isinstance(a, torch.Tensor)
        ]
        if any(t.dtype == torch.bfloat16 for t in tensors):
            self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_no_bf16_tensor_reaches_an_op_without_a_cuda_bf16_kernel():
    """The model itself in bfloat16 (the dtype CUDA autocast hands SAA's
    edge padding; CPU autocast would run the padding in float32), at an
    odd size where every SAA layer pads: forward and backward."""
    model = build('t').to(torch.bfloat16)
    x = torch.randn(2, 3, 97, 131, dtype=torch.bfloat16)
    with _BF16Ops() as ops:
        outs = model(x)
        sum(o.float().sum() for o in outs).backward()
    assert 'convolution' in ops.names  # the recorder sees bf16 work
    assert not ops.names & NO_CUDA_BF16_IN_TORCH_21, sorted(ops.names)
