"""``with_cp`` beyond one eager backward: under ``torch.compile`` and with a
second backward through a retained graph.

Each checkpointed run is compared with the same weights trained without
``with_cp`` (BatchNorm in training mode): gradients, running statistics and
``num_batches_tracked`` must agree.

``torch.compile`` runs with the ``aot_eager`` backend: it traces through
dynamo and AOTAutograd (where the checkpoint becomes a recompute region of
the joint graph) but runs aten ops eagerly, so it skips inductor's C++ code
generation: with inductor the first step of ``TWO_STAGES`` took 640 s here
(2 cores shared with other work), with ``aot_eager`` 6-15 s.
"""
import pytest
import torch
from packaging.version import Version
from torch._dynamo.backends.registry import lookup_backend
from torch._higher_order_ops.wrap import tag_activation_checkpoint

from saevit_mm.models import SAEViT
from .utils import TINY_ARCH, assert_same_state

#: Two stages (three blocks) for torch.compile: tracing the four stages of
#: TINY_ARCH took 20 s here, this one about a third of it; one stage with
#: two blocks keeps a checkpoint feeding the next.
TWO_STAGES = dict(
    embed_dims=(8, 16),
    depths=(1, 2),
    num_heads=(1, 2),
    sample_ratios=(4, 2),
    ffn_ratio=2)

#: torch 2.1's dynamo does not trace a checkpoint with a ``context_fn``: it
#: runs it eagerly (a graph break); torch 2.14's traces it into the graph.
TORCH_2_1 = Version(torch.__version__.split('+')[0]) < Version('2.2')


def _pair(arch=TINY_ARCH, **kwargs):
    """The same weights without and with ``with_cp``, in training mode."""
    out_indices = tuple(range(len(arch['depths'])))
    base = SAEViT(arch, out_indices=out_indices, **kwargs)
    base.init_weights()
    cp = SAEViT(arch, out_indices=out_indices, with_cp=True, **kwargs)
    cp.load_state_dict(base.state_dict())
    return base.train(), cp.train()


def _loss(outs):
    # a fixed projection: BN-normalised maps make the plain sum constant
    return sum(
        (o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs)


def _grads(model):
    """Every parameter's gradient (each must have one)."""
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert None not in grads.values()
    return {n: g.clone() for n, g in grads.items()}


def _assert_same_grads(actual, expected, **tolerance):
    assert actual.keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(
            actual[name],
            grad,
            msg=lambda text, name=name: f'{name}: {text}',
            **tolerance)


@pytest.fixture
def fresh_dynamo():
    """No compiled code from other tests, and none left behind."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _graph_break(module, args):
    torch._dynamo.graph_break()


@pytest.mark.parametrize('broken_blocks', [
    pytest.param((), id='traced'),
    pytest.param(((1, 0), ),
                 id='graph-break',
                 marks=pytest.mark.skipif(
                     TORCH_2_1,
                     reason="torch 2.1's dynamo fails internally on a graph "
                     'break inside a checkpointed function')),
])
def test_with_cp_under_torch_compile_trains_like_eager(fresh_dynamo,
                                                       broken_blocks):
    """Two training steps of the compiled checkpointed backbone give the
    eager plain backbone's outputs, gradients and BatchNorm buffers (each
    updated once per step). Every block is checkpointed inside the compiled
    graph, except a block that dynamo cannot trace (``graph-break``): its
    checkpoint runs eagerly, and must not update the buffers twice."""
    base, cp = _pair(TWO_STAGES)
    for stage, block in broken_blocks:
        cp.stages[stage].blocks[block].register_forward_pre_hook(_graph_break)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return lookup_backend('aot_eager')(gm, example_inputs)

    compiled = torch.compile(cp, backend=backend)
    runs = [(base, base), (compiled, cp)]
    optimizers = [
        torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for _, m in runs
    ]
    for step in range(2):
        x = torch.randn(2, 3, 64, 48)
        results = []
        for (forward, model), optimizer in zip(runs, optimizers):
            optimizer.zero_grad()
            outs = forward(x)
            _loss(outs).backward()
            results.append(([o.detach() for o in outs], _grads(model)))
            optimizer.step()
        (outs, grads), (outs_cp, grads_cp) = results
        for a, b in zip(outs, outs_cp, strict=True):
            torch.testing.assert_close(b, a, msg=f'step {step}')
        _assert_same_grads(grads_cp, grads)
    assert_same_state(cp.state_dict(), base.state_dict())
    assert cp.stages[1].blocks[1].norm1.num_batches_tracked.item() == 2
    checkpoints = [
        node for gm in graphs for node in gm.graph.nodes
        if node.target is tag_activation_checkpoint
    ]
    blocks = sum(TWO_STAGES['depths'])
    if broken_blocks:  # the eager way was taken
        assert len(checkpoints) < blocks
    else:
        assert len(checkpoints) == (0 if TORCH_2_1 else blocks)


def test_second_backward_through_retained_graph():
    """``backward(retain_graph=True)`` then ``backward()``: every recompute
    (one per backward) restores the buffers and redraws the same drop-path
    masks, so the gradients are twice one backward's and the buffers are
    the plain model's."""
    base, cp = _pair(drop_path_rate=0.2)
    x = torch.randn(2, 3, 64, 48)
    results = []
    for model in (base, cp):
        torch.manual_seed(1)
        loss = _loss(model(x))
        loss.backward(retain_graph=True)
        once = _grads(model)
        loss.backward()
        results.append((once, _grads(model)))
    (once, twice), (once_cp, twice_cp) = results
    _assert_same_grads(once_cp, once)
    _assert_same_grads(twice_cp, twice)
    _assert_same_grads(twice_cp, {n: 2 * g for n, g in once_cp.items()})
    assert_same_state(cp.state_dict(), base.state_dict())
    assert cp.stages[2].blocks[1].norm1.num_batches_tracked.item() == 1
