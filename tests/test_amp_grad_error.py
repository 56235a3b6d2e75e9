"""Whole-backbone gradient of SAEViT-t under CPU autocast against float64,
beside ResNet-18 measured the same way in the same process
(``tools/analysis_tools/amp_grad_error.py``; the batch 1, 2 and 8 runs over
three seeds are in ``docs/amp.md``). Batch 2 at 256x320 in training mode,
as a detector trains with 2 images per GPU."""
import math

import pytest
from amp_grad_error import DTYPES, ResNet18Stages, build_saevit, grad_error
from test_amp_train_step import cpu_autocast_unsupported

#: SAEViT-t's error may be at most this multiple of ResNet-18's
PEER_RATIO = 1.5


@pytest.mark.parametrize('name', list(DTYPES))
def test_gradient_error_at_batch_2_within_the_peers(name):
    dtype = DTYPES[name]
    reason = cpu_autocast_unsupported(dtype)
    if reason:
        pytest.skip(reason)
    ours = grad_error(lambda: build_saevit(arch='t'), 2, (256, 320), dtype,
                      seed=0)
    peer = grad_error(ResNet18Stages, 2, (256, 320), dtype, seed=0)
    assert math.isfinite(ours), ours
    assert ours <= PEER_RATIO * peer, (ours, peer)
