"""Model unit tests run on one thread (see ``single_thread``)."""
import pytest


@pytest.fixture(autouse=True)
def _model_tests_single_thread(single_thread):
    yield
