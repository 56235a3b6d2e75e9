"""``tools/test.py --out`` and ``--out-item``: save what a test produced,
each host's way."""
import argparse
from typing import Any, Dict, List, Optional

import mmengine
from mmengine.config import Config
from mmengine.dist import is_main_process

from .host_scope import host_scope

__all__ = ['RESULT_DUMPS', 'enable_result_dump', 'dump_metrics']

#: Host scope -> the metric that ``tools/test.py --out`` adds to the test
#: evaluator (mmseg has none: its ``--out`` sets the ``output_dir`` of the
#: metrics instead).
RESULT_DUMPS = {
    'mmpretrain': 'DumpResults',
    'mmdet': 'DumpDetResults',
    'mmseg': None,
}
#: File types ``mmengine.dump`` writes (``--out-item metrics``).
_METRIC_FILES = ('.pkl', '.pickle', '.json', '.yaml', '.yml')
_PICKLES = ('.pkl', '.pickle')


def _metric_list(evaluator: Any) -> List[Any]:
    """The metric configs of an evaluator config, as a new list."""
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        evaluator = evaluator['metrics']
    if isinstance(evaluator, (list, tuple)):
        return list(evaluator)
    return [] if evaluator is None else [evaluator]


def enable_result_dump(cfg: Config,
                       out: str,
                       out_item: Optional[str] = None) -> Config:
    """``tools/test.py --out``: save the test results, each host's way.

    mmpretrain and mmdet: a metric that pickles the predictions to ``out``
    is appended to ``cfg.test_evaluator`` (``DumpResults``,
    ``DumpDetResults``; :data:`RESULT_DUMPS`); with ``out_item='metrics'``
    nothing changes here and :func:`dump_metrics` writes the metrics after
    the test. mmseg: ``out`` is a directory, set as ``output_dir`` (with
    ``keep_results=True``) of every test metric, which then writes one
    label map per image.

    Args:
        cfg: The config, changed in place.
        out: The file (mmpretrain, mmdet) or directory (mmseg).
        out_item: ``'pred'`` or ``'metrics'``, for mmpretrain and mmdet;
            None means ``'pred'``. Defaults to None.

    Returns:
        ``cfg``.

    Raises:
        ValueError: An ``out`` of the wrong file type, ``out_item`` or no
            test metric with an mmseg config, or a scope of no known host.
    """
    scope = host_scope(cfg, '--out')
    evaluator = cfg.get('test_evaluator')
    if scope == 'mmseg':
        if out_item is not None:
            raise ValueError(
                '--out-item: with an mmseg config --out is a directory of '
                'predicted label maps; --out-item is for mmpretrain and mmdet '
                'configs, where --out is a file.')
        if not _metric_list(evaluator):
            raise ValueError(
                '--out: this mmseg config has no test_evaluator; --out sets '
                'the output_dir of its metric (IoUMetric).')
        metrics = [
            dict(m, output_dir=out, keep_results=True)
            for m in _metric_list(evaluator)
        ]
        if isinstance(evaluator, dict) and 'metrics' in evaluator:
            cfg.test_evaluator = dict(evaluator, metrics=metrics)
        else:
            cfg.test_evaluator = metrics[0] if len(metrics) == 1 else metrics
        return cfg
    if out_item == 'metrics':
        if not out.endswith(_METRIC_FILES):
            raise ValueError(
                f'--out {out!r} with --out-item metrics: the file must end '
                f'with one of {list(_METRIC_FILES)}.')
        return cfg
    if not out.endswith(_PICKLES):
        raise ValueError(
            f'--out {out!r}: predictions are dumped as a pickle, so the file '
            f'must end with one of {list(_PICKLES)}.')
    dump = dict(type=RESULT_DUMPS[scope], out_file_path=out)
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        cfg.test_evaluator = dict(
            evaluator, metrics=[*_metric_list(evaluator), dump])
    else:
        cfg.test_evaluator = [*_metric_list(evaluator), dump]
    return cfg


def dump_metrics(metrics: Dict[str, Any], args: argparse.Namespace) -> None:
    """After the test: write ``metrics`` to ``--out`` if ``--out-item
    metrics`` asks for it (on the main process only: every rank holds them).
    """
    if args.out is not None and args.out_item == 'metrics' \
            and is_main_process():
        mmengine.dump(metrics, args.out)
