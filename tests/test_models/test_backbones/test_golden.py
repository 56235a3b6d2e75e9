"""The forward math of SAEViT-t, pinned: seeded weights and a fixed input
give the committed summary values (``tests/data/golden_saevit_t.json``), in
the eager and the deployed form. Regenerate after a deliberate change of the
architecture: ``python tools/misc/golden_outputs.py``."""
import json

import pytest
from golden_outputs import GOLDEN, golden_summary


@pytest.mark.parametrize('deploy', [False, True], ids=['eager', 'deployed'])
def test_saevit_t_outputs_match_the_golden_values(deploy):
    expected = json.loads(GOLDEN.read_text())['outputs']
    actual = golden_summary(deploy)
    assert len(actual) == len(expected) == 4
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a['shape'] == e['shape'], i
        # float64 throughout: only summation order differs between the
        # forms, stacks and thread counts
        for key in ('mean', 'std'):
            assert a[key] == pytest.approx(e[key], rel=1e-7, abs=1e-9), \
                (i, key)
        assert a['samples'] == pytest.approx(e['samples'], rel=1e-7,
                                             abs=1e-9), i
