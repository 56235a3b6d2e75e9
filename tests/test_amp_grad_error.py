"""Whole-backbone gradient of SAEViT-t under CPU autocast against float64,
beside ResNet-18 measured the same way in the same process
(``tools/analysis_tools/amp_grad_error.py``; the batch 1, 2 and 8 runs over
three seeds are in ``docs/amp.md``). SAEViT-t at 256x320 in training mode,
batch 1, 2 (as a detector trains, 2 images per GPU) and 8 (slow), seed 0."""
import math

import pytest
from amp_grad_error import DTYPES, ResNet18Stages, build_saevit, grad_error
from test_amp_train_step import cpu_autocast_unsupported

#: SAEViT-t's error may be at most this multiple of ResNet-18's
PEER_RATIO = 1.5


@pytest.mark.parametrize('batch,name', [
    pytest.param(batch, name, marks=[pytest.mark.slow] if batch == 8 else [],
                 id=f'batch{batch}-{name}')
    for batch in (1, 2, 8) for name in DTYPES
])
def test_gradient_error_within_the_peers(batch, name):
    dtype = DTYPES[name]
    reason = cpu_autocast_unsupported(dtype)
    if reason:
        pytest.skip(reason)
    ours = grad_error(lambda: build_saevit(arch='t'), batch, (256, 320),
                      dtype, seed=0)
    peer = grad_error(ResNet18Stages, batch, (256, 320), dtype, seed=0)
    assert math.isfinite(ours), ours
    assert ours <= PEER_RATIO * peer, (ours, peer)
