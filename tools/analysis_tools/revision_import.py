"""Import ``saevit_mm`` as of another git revision, beside today's.

The package at ``rev`` is extracted from git into a temporary directory
under the name ``saevit_mm_<sha>`` (every ``saevit_mm`` in its sources
renamed, so its imports and registry scope are its own) and imported.
While it imports, mmengine's root ``MODELS`` and ``HOOKS`` registries are
set aside: its classes register there under the names today's package
uses, which mmengine would refuse; afterwards the root registries hold
what they held (and what other packages registered meanwhile), and the
old classes stay in their own scope's registries. mmengine's checkpoint
loaders (which importing the package registers) are restored too, so that
checkpoints keep loading through today's package. Used by
``benchmark.py --baseline`` to time before and after in one process.
"""
import atexit
import importlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
PACKAGE = 'saevit_mm'


def _git(*args: str, repo: Path = REPO) -> bytes:
    return subprocess.run(['git', '-C', str(repo), *args],
                          check=True,
                          capture_output=True).stdout


@contextmanager
def _root_registries_set_aside(package: str) -> Iterator[None]:
    """Empty mmengine's root ``MODELS`` and ``HOOKS`` while ``package``
    imports; then restore them, keeping what other packages registered
    meanwhile (mmcv's layers, when it is first imported then)."""
    from mmengine.registry import HOOKS, MODELS
    saved = {
        registry: dict(registry._module_dict)
        for registry in (MODELS, HOOKS)
    }
    try:
        for registry in saved:
            registry._module_dict.clear()
        yield
    finally:
        for registry, entries in saved.items():
            added = {
                key: cls
                for key, cls in registry._module_dict.items()
                if not cls.__module__.startswith(package)
            }
            registry._module_dict.clear()
            registry._module_dict.update(added, **entries)


@contextmanager
def _checkpoint_loaders_kept() -> Iterator[None]:
    """mmengine's checkpoint loaders as they were before the block (an
    imported revision registers its own)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    saved = dict(CheckpointLoader._schemes)  # registering mutates it
    try:
        yield
    finally:
        CheckpointLoader._schemes = type(CheckpointLoader._schemes)(saved)


def import_revision(rev: str, repo: Path = REPO) -> ModuleType:
    """``saevit_mm`` at git revision ``rev`` of ``repo``, imported as
    ``saevit_mm_<sha>`` (``<sha>``: the commit's first 8 hex digits).

    Raises:
        ValueError: ``rev`` is not a commit of ``repo``.
    """
    try:
        sha = _git('rev-parse', '--verify', '--short=8', f'{rev}^{{commit}}',
                   repo=repo).decode().strip()
    except subprocess.CalledProcessError as err:
        raise ValueError(f'{rev!r} is not a commit of {repo}: '
                         f'{err.stderr.decode().strip()}') from None
    name = f'{PACKAGE}_{sha}'
    if name in sys.modules:
        return sys.modules[name]
    root = Path(tempfile.mkdtemp(prefix=f'{name}-'))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    archive = _git('archive', '--format=tar', sha, PACKAGE, repo=repo)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(root)
    (root / PACKAGE).rename(root / name)
    for source in (root / name).rglob('*.py'):
        source.write_text(source.read_text().replace(PACKAGE, name))
    sys.path.insert(0, str(root))
    with _root_registries_set_aside(name), _checkpoint_loaders_kept():
        module = importlib.import_module(name)
        importlib.import_module(f'{name}.models')
        importlib.import_module(f'{name}.deploy')
    return module
