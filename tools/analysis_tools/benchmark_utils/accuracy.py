"""Published ImageNet-1K top-1 of each benchmarked model, with its source.

The benchmark measures speed, not accuracy: the accuracy-vs-speed chart
plots each model's *published* top-1 against the throughput measured in the
same run. Where an installed host ships the number (mmpretrain's
``.mim/configs/<model>/metafile.yml``), it is read from that file at run
time (:class:`MetafileTop1`); otherwise it is a constant with its citation
(:class:`PaperTop1`): the model's paper, or its authors' model zoo where
that is what the released weights score.
"""
import importlib.util
import os
from dataclasses import dataclass
from typing import Dict, Union

__all__ = [
    'MetafileTop1', 'PaperTop1', 'Top1Ref', 'metafile_path',
    'read_metafile_top1', 'resolve_top1'
]

#: the dataset name mmpretrain's metafiles use for ImageNet-1K
IMAGENET_1K = 'ImageNet-1k'


@dataclass(frozen=True)
class MetafileTop1:
    """A top-1 read from a host package's metafile.

    Attributes:
        package: The installed host, e.g. ``'mmpretrain'``.
        metafile: Path inside the package, e.g.
            ``'.mim/configs/edgenext/metafile.yml'``.
        entry: The ``Name`` of the model entry in that file.
    """

    package: str
    metafile: str
    entry: str


@dataclass(frozen=True)
class PaperTop1:
    """A published top-1 that no installed host ships.

    Attributes:
        value: Top-1 in percent.
        citation: Where it is published (title and arXiv id, or the
            authors' model zoo) and under which setting.
    """

    value: float
    citation: str


Top1Ref = Union[MetafileTop1, PaperTop1]


def metafile_path(package: str, metafile: str) -> str:
    """Absolute path of ``metafile`` inside the installed ``package``.

    Raises:
        ModuleNotFoundError: If ``package`` is not installed.
    """
    spec = importlib.util.find_spec(package)  # no import of the package
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f'{package} is not installed', name=package)
    return os.path.join(list(spec.submodule_search_locations)[0], metafile)


def read_metafile_top1(package: str,
                       metafile: str,
                       entry: str,
                       dataset: str = IMAGENET_1K) -> float:
    """The ``Top 1 Accuracy`` that ``metafile`` gives ``entry`` on
    ``dataset``.

    Raises:
        ModuleNotFoundError: If ``package`` is not installed.
        FileNotFoundError: If the package has no such metafile.
        KeyError: If the file has no entry ``entry`` or the entry no
            ``dataset`` top-1; the message lists what it has.
    """
    import yaml
    with open(metafile_path(package, metafile), encoding='utf-8') as file:
        meta = yaml.safe_load(file)
    models = {m['Name']: m for m in meta.get('Models') or []}
    if entry not in models:
        raise KeyError(f'{package}/{metafile} has no entry {entry!r}; '
                       f'entries: {sorted(models)}')
    for result in models[entry].get('Results') or []:
        metrics = result.get('Metrics') or {}
        if result.get('Dataset') == dataset and 'Top 1 Accuracy' in metrics:
            return float(metrics['Top 1 Accuracy'])
    raise KeyError(f'{package}/{metafile}: {entry!r} has no {dataset} '
                   'Top 1 Accuracy')


def resolve_top1(ref: Top1Ref) -> Dict[str, object]:
    """``dict(top1=..., top1_source=...)`` for the JSON row of a model.

    Raises:
        ModuleNotFoundError, FileNotFoundError, KeyError: See
            :func:`read_metafile_top1`.
    """
    if isinstance(ref, PaperTop1):
        return dict(top1=ref.value, top1_source=ref.citation)
    value = read_metafile_top1(ref.package, ref.metafile, ref.entry)
    return dict(
        top1=value,
        top1_source=f'{ref.package}/{ref.metafile}: {ref.entry} '
        f'({IMAGENET_1K} Top 1 Accuracy)')
