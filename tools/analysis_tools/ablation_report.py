"""Report of the ablation sweep: seed statistics, the chart and the table.

A module of ``tools/analysis_tools/ablation.py``, not a command.
"""
import statistics
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

__all__ = ['summarize_seeds', 'plot', 'table_lines', 'markdown']

#: Marker colour of each kind of arm.
COLORS = dict(saevit='tab:red', ablation='tab:orange', peer='tab:blue')


def summarize_seeds(runs: Mapping[int, Mapping[str, float]],
                    metric: str = 'top1') -> Dict[str, object]:
    """Mean, sample standard deviation and range of ``metric`` over seeds,
    with each seed's value and training time."""
    seeds = sorted(runs)
    values = [runs[s][metric] for s in seeds]
    return {
        'seeds': seeds,
        metric: values,
        f'{metric}_mean': statistics.mean(values),
        f'{metric}_std': statistics.stdev(values) if len(values) > 1 else 0.,
        f'{metric}_min': min(values),
        f'{metric}_max': max(values),
        'train_s': [runs[s]['train_s'] for s in seeds],
    }


def _panels(axes, rows: Sequence[Mapping], metric: str, label: str,
            settings: Mapping) -> None:
    """``metric`` (mean, seed range) of every row against throughput (left
    axis) and FLOPs (right axis)."""
    for row in rows:
        y = row[f'{metric}_mean']
        yerr = [[y - row[f'{metric}_min']], [row[f'{metric}_max'] - y]]
        star = row['kind'] == 'saevit'
        for ax, x in zip(axes, (row['throughput']['median'], row['gflops'])):
            ax.errorbar(
                x, y, yerr=yerr, fmt='*' if star else 'o', capsize=3,
                color=COLORS[row['kind']], markersize=12 if star else 7)
            ax.annotate(row['name'], (x, y), textcoords='offset points',
                        xytext=(6, 4), fontsize=8)
    size = settings['img_size']
    axes[0].set_xlabel(f'img/s, batch {settings["batch_size"]} @ {size}² '
                       f'(CPU, {settings["threads"]} threads)')
    axes[1].set_xlabel(f'GFLOPs (multiply-adds) @ {size}²')
    for ax in axes:
        ax.set_ylabel(f'{label}, mean and range over '
                      f'{len(settings["seeds"])} seeds')
        ax.grid(alpha=0.3)


def plot(result: Mapping, path: Path) -> None:
    """One row of two panels per task: the metric against throughput and
    against FLOPs."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    tasks = [('arms', 'top1', 'demo top-1 (%)', 'classification')]
    if result.get('dense', {}).get('arms'):
        tasks.append(('dense', 'miou', 'demo mIoU (%)',
                      'Semantic FPN fine-tuned from the classifier'))
    fig, axes = plt.subplots(
        len(tasks), 2, figsize=(13, 5 * len(tasks)), squeeze=False)
    for row_axes, (key, metric, label, title) in zip(axes, tasks):
        part = result if key == 'arms' else result['dense']
        _panels(row_axes, part['arms'], metric, label, part['settings'])
        row_axes[0].set_title(f'Demo {title}: accuracy vs throughput',
                              fontsize=10)
        row_axes[1].set_title(f'Demo {title}: accuracy vs FLOPs', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table_lines(rows: Sequence[Mapping], metric: str,
                label: str) -> List[str]:
    """A plain-text table: ``metric`` mean and range, GFLOPs, img/s."""
    lines = [f'{"arm":<24} {label:>10} {"range":>13} {"GFLOPs":>7} '
             f'{"img/s":>7}']
    for row in rows:
        lines.append(
            f'{row["name"]:<24} {row[metric + "_mean"]:>10.1f} '
            f'{row[metric + "_min"]:>6.1f}-{row[metric + "_max"]:<6.1f} '
            f'{row["gflops"]:>7.3f} {row["throughput"]["median"]:>7.1f}')
    return lines


def _versus(row: Mapping, ref: Optional[Mapping], metric: str) -> str:
    """Difference of means to ``ref`` and whether the seed ranges overlap
    (with this few seeds, disjoint ranges are the honest bar for "beyond
    the seed spread")."""
    if ref is None:
        return '-'
    if row is ref:
        return 'reference'
    delta = row[f'{metric}_mean'] - ref[f'{metric}_mean']
    apart = (row[f'{metric}_min'] > ref[f'{metric}_max']
             or row[f'{metric}_max'] < ref[f'{metric}_min'])
    return f'{delta:+.1f} ({"beyond" if apart else "within"} the spread)'


def _markdown_table(rows: Sequence[Mapping], metric: str, label: str,
                    settings: Mapping) -> List[str]:
    ref = next((r for r in rows if r['kind'] == 'saevit'), None)
    size, batch = settings['img_size'], settings['batch_size']
    lines = [
        f'| arm | {label}: mean ± std | per seed | vs SAEViT-t | params (M) '
        f'| GFLOPs @ {size}² | img/s (batch {batch}, {size}²) |',
        '|---|---:|---|---|---:|---:|---:|'
    ]
    for row in rows:
        seeds = ', '.join(f'{v:.1f}' for v in row[metric])
        lines.append(
            f'| {row["name"]} | {row[metric + "_mean"]:.1f} ± '
            f'{row[metric + "_std"]:.1f} | {seeds} | '
            f'{_versus(row, ref, metric)} | {row["params_m"]:.2f} | '
            f'{row["gflops"]:.3f} | {row["throughput"]["median"]:.1f} |')
    return lines


def markdown(result: Mapping) -> str:
    """The README's tables: one per task, generated from ``ablation.json``."""
    threads = result['settings']['threads']
    lines = [
        f'Classification (demo top-1 %; throughput measured in one process, '
        f'interleaved, {threads} threads):', ''
    ]
    lines += _markdown_table(result['arms'], 'top1', 'top-1',
                             result['settings'])
    dense = result.get('dense', {})
    if dense.get('arms'):
        lines += [
            '', f'Semantic FPN fine-tuned from each seed\'s classifier '
            f'(demo mIoU %; `{dense["task"]}`; segmenters timed whole):', ''
        ]
        lines += _markdown_table(dense['arms'], 'miou', 'mIoU',
                                 dense['settings'])
    lines += [
        '', f'`{result["command"]}`: {result["total_s"] / 60:.0f} min in its '
        f'last invocation, {result["runs_s"] / 60:.0f} min of training and '
        f'testing over all runs.'
    ]
    return '\n'.join(lines) + '\n'
