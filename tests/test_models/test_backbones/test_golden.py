"""The forward math of SAEViT-t, pinned: seeded weights and a fixed input
give the committed summary values (``tests/data/golden_saevit_t.json``), in
the eager and the deployed form. Regenerate after a deliberate change of the
architecture: ``python tools/misc/golden_outputs.py``."""
import json

import pytest
from golden_outputs import GOLDEN, golden_summary, gradient_summary


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
        assert a['samples'] == pytest.approx(
            e['samples'], rel=1e-7, abs=1e-9), i


def _assert_summary(actual, expected, where):
    assert actual['shape'] == expected['shape'], where
    # exact-zero sums (a BatchNorm's input bias) round differently by
    # thread count: the absolute tolerance follows the values' scale
    tol = dict(rel=1e-7, abs=1e-9 * (1 + expected['std']))
    for key in ('mean', 'std'):
        assert actual[key] == pytest.approx(expected[key], **tol), \
            (where, key)
    assert actual['samples'] == pytest.approx(expected['samples'], **tol), \
        where


def test_saevit_t_training_step_matches_the_golden_gradients():
    """The gradients and running statistics of one training-mode step, as
    the plain autograd chain computed them before the memory-saving
    training path (:mod:`saevit_mm.models.layers.norm_act_op`)."""
    expected = json.loads(GOLDEN.read_text())['gradients']
    actual = gradient_summary()
    _assert_summary(actual['input'], expected['input'], 'input')
    assert actual['params'].keys() == expected['params'].keys()
    for part, summary in expected['params'].items():
        _assert_summary(actual['params'][part], summary, part)
    _assert_summary(actual['running_stats'], expected['running_stats'],
                    'running_stats')
