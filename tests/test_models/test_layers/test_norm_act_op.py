"""The eager training path that keeps one map per norm -> act -> op chain:
same outputs, gradients and running statistics as the plain chain, fewer
bytes kept for backward."""
import copy

import pytest
import torch
from test_amp_train_step import cpu_autocast_unsupported
from torch import nn

import saevit_mm.models.layers.ciffn as ciffn_module
import saevit_mm.models.layers.dwsconv as dwsconv_module
from saevit_mm.models import SAEViT
from saevit_mm.models.layers import CIFFN, DWSConv
from saevit_mm.models.utils.cost import saved_tensor_bytes


@pytest.fixture
def plain_chain(monkeypatch):
    """Within the test, a callable that runs a function on the plain
    autograd chain (every norm a module call, every map kept)."""

    def run(fn):
        with monkeypatch.context() as patch:
            for module in (ciffn_module, dwsconv_module):
                patch.setattr(module, 'fusable', lambda *args: False)
            return fn()

    return run


def _randomize(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # norm weights and biases away from 1 and 0
                base = 1. if name.endswith('weight') else 0.
                p.copy_(base + 0.3 * torch.randn(p.shape, generator=gen))
    return model


def _step(model, x, dtype=None):
    model.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=dtype, enabled=dtype is not None):
        outs = model(x)
        loss = sum(
            (out.to(x.dtype) *
             torch.linspace(-1, 1, out.numel(), dtype=x.dtype).view(out.shape)
             ).sum() for out in outs)
    loss.backward()
    return [out.detach() for out in outs]


def test_training_step_equals_the_plain_chain(plain_chain):
    torch.manual_seed(0)
    fused = _randomize(SAEViT('t', out_indices=(0, 1, 2, 3))).train()
    plain = copy.deepcopy(fused)
    x = torch.randn(2, 3, 64, 96)
    outs = _step(fused, x)
    expected = plain_chain(lambda: _step(plain, x))
    for out, want in zip(outs, expected):
        assert torch.equal(out, want)
    for (name, p), q in zip(fused.named_parameters(), plain.parameters()):
        # the same aten ops on the same inputs: equal up to the order of
        # the gradient accumulation
        torch.testing.assert_close(
            p.grad,
            q.grad,
            rtol=1e-5,
            atol=1e-5 * float(q.grad.abs().max()),
            msg=name)
    for (name, b), c in zip(fused.named_buffers(), plain.buffers()):
        assert torch.equal(b, c), name


def _grad_error(model, reference):
    """Largest gradient error over the parameters, each relative to the
    largest gradient of that parameter in ``reference``."""
    return max(
        float((p.grad.double() - q.grad).abs().max() / q.grad.abs().max())
        for p, q in zip(model.parameters(), reference.parameters()))


@pytest.mark.parametrize(
    'dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
def test_training_step_under_autocast_is_as_accurate_as_the_plain_chain(
        dtype, plain_chain):
    """Under autocast both chains round in the autocast dtype (the
    summation orders differ): against a float64 step the fused gradients
    are as close as the plain chain's."""
    reason = cpu_autocast_unsupported(dtype)
    if reason:
        pytest.skip(reason)
    torch.manual_seed(0)
    fused = _randomize(SAEViT('t', out_indices=(0, 1, 2, 3))).train()
    plain, reference = copy.deepcopy(fused), copy.deepcopy(fused).double()
    x = torch.randn(2, 3, 64, 96)
    _step(fused, x, dtype)
    plain_chain(lambda: _step(plain, x, dtype))
    plain_chain(lambda: _step(reference, x.double()))
    fused_error = _grad_error(fused, reference)
    plain_error = _grad_error(plain, reference)
    assert fused_error <= 1.25 * plain_error, (fused_error, plain_error)


def test_ciffn_keeps_two_hidden_width_maps(plain_chain):
    """Kept for backward: the input, the expansion's output, the shuffled
    depth-wise output and the projection's output (2 x 16 + 2 x 48
    channels), where the plain chain keeps five hidden-width maps."""
    ffn, norm = CIFFN(16, ffn_ratio=3).train(), nn.BatchNorm2d(16).train()
    x = torch.randn(2, 16, 32, 32)
    params = (*ffn.parameters(), *norm.parameters())
    fused, _ = saved_tensor_bytes(lambda: ffn(x, norm), params)
    plain, _ = plain_chain(
        lambda: saved_tensor_bytes(lambda: ffn(x, norm), params))
    pixels = 2 * 32 * 32 * 4  # float32 bytes per channel
    assert (2 * 16 + 2 * 48) * pixels <= fused < (2 * 16 + 2 * 48 + 1) * pixels
    assert plain >= (2 * 16 + 5 * 48) * pixels


def test_dwsconv_keeps_input_depthwise_and_pointwise_output(plain_chain):
    layer, x = DWSConv(16).train(), torch.randn(2, 16, 20, 20)
    params = tuple(layer.parameters())
    fused, _ = saved_tensor_bytes(lambda: layer(x), params)
    plain, _ = plain_chain(
        lambda: saved_tensor_bytes(lambda: layer(x), params))
    pixels = 2 * 20 * 20 * 4
    assert 3 * 16 * pixels <= fused < (3 * 16 + 1) * pixels
    assert plain >= 5 * 16 * pixels


@pytest.mark.parametrize(
    'norm_cfg', [
        dict(type='BN', momentum=None),
        dict(type='BN', track_running_stats=False),
        dict(type='GN', num_groups=2),
    ],
    ids=['cumulative-average', 'no-running-stats', 'GN'])
def test_other_norm_settings_train_like_the_plain_chain(norm_cfg, plain_chain):
    torch.manual_seed(0)
    fused = _randomize(CIFFN(8, ffn_ratio=2, norm_cfg=norm_cfg)).train()
    plain = copy.deepcopy(fused)
    for step in range(2):
        x = torch.randn(2, 8, 9, 11, requires_grad=True)
        out = fused(x)
        out.square().sum().backward()
        y = x.detach().requires_grad_()
        expected = plain_chain(lambda: plain(y))
        expected.square().sum().backward()
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-5, atol=1e-5)
    for (name, b), c in zip(fused.named_buffers(), plain.buffers()):
        torch.testing.assert_close(b, c, msg=name)


def test_frozen_and_inference_forwards_call_the_norm_modules():
    """Eval-mode norms and no-grad forwards take the plain chain (data-flow
    passes and forward hooks see every norm)."""
    ffn = CIFFN(8, ffn_ratio=2)
    seen = []
    ffn.dw_norm.register_forward_hook(lambda *args: seen.append(1))
    x = torch.randn(2, 8, 5, 5)
    ffn.train()(x).sum().backward()
    assert not seen  # training with grad: the fused path
    with torch.no_grad():
        ffn(x)
    ffn.eval()(x).sum().backward()
    assert len(seen) == 2
