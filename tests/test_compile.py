"""``torch.compile`` of the SAEViT backbone: one graph, no break, and with
dynamic shapes one compilation for detection inputs of several sizes.

Backend ``aot_eager``: Dynamo's capture (graph breaks, guards, recompiles)
is what is tested, and AOTAutograd traces the captured graph as Inductor
would (functionalization, decompositions), but runs it eagerly: no code
generation or C++ compiler, which on a 2-core CPU would take minutes.
"""
import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounterWithBackend
from torch._dynamo.utils import counters

from saevit_mm.models import SAEViT

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures('single_thread')]

#: Detection-sized inputs (H, W). Stages 0 and 1 are above the delegate
#: bound (1024) and take the same factors, 1 x 2, at all three; no map is
#: padded; every delegate grid is even (torch 2.1's pooling shape function
#: guards on the parity of the grid it pools).
SIZES = ((512, 640), (512, 768), (640, 768))


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _backbone() -> SAEViT:
    torch.manual_seed(0)
    return SAEViT('t', out_indices=(0, 1, 2, 3)).eval()


def pool_factors_by_stage(model: SAEViT, height: int, width: int):
    """The delegate factors of each stage's SAA layers on an input."""
    factors = []
    for i, stage in enumerate(model.stages):
        stride = 4 * 2**i
        saa = stage.blocks[0].attn
        factors.append(saa.pool_factors(-(-height // stride),
                                        -(-width // stride)))
    return factors


def test_dynamo_finds_no_graph_break():
    """One graph for the whole backbone at a size above the bound."""
    model = _backbone()
    x = torch.randn(1, 3, *SIZES[0])
    with torch.no_grad():
        explanation = torch._dynamo.explain(model)(x)
    reasons = [(b.reason, [f'{f.filename}:{f.lineno}' for f in b.user_stack])
               for b in explanation.break_reasons]
    assert explanation.graph_break_count == 0, reasons
    assert explanation.graph_count == 1


def test_dynamic_shapes_compile_once_for_three_sizes():
    model = _backbone()
    factors = [pool_factors_by_stage(model, *size) for size in SIZES]
    assert factors[0] == factors[1] == factors[2] == [(1, 2), (1, 2),
                                                      (1, 1), (1, 1)]
    backend = CompileCounterWithBackend('aot_eager')
    compiled = torch.compile(model, dynamic=True, backend=backend)
    compilations = []
    for height, width in SIZES:
        x = torch.randn(2, 3, height, width)
        with torch.no_grad():
            expected = model(x)
            outs = compiled(x)
        for out, ref in zip(outs, expected, strict=True):
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        # backend calls so far (torch 2.14's AOTAutograd restarts the first
        # capture once to specialize BatchNorm's float attributes, which
        # dynamic=True traced as symbols: two calls, one graph)
        compilations.append(backend.frame_count)
    assert compilations[0] >= 1
    assert compilations == [compilations[0]] * len(SIZES), \
        f'recompiled: backend calls after each size {compilations}'
    assert counters['stats']['unique_graphs'] == 1
    assert not counters['graph_break'], dict(counters['graph_break'])
