"""The examples in the package's docstrings run and print what they say
(the same check as ``pytest --doctest-modules saevit_mm``)."""
import doctest
import importlib
import pkgutil

import pytest

import saevit_mm

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(saevit_mm.__path__,
                                                'saevit_mm.'))


def test_every_module_is_found():
    assert 'saevit_mm.models.utils.backbone_utils' in MODULES


@pytest.mark.parametrize('name', MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, name):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f'{results.failed} doctest example(s) failed'
