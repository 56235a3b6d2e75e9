"""Benchmark output: JSON file, PNG chart and a console table."""
import json
import math
import os
from typing import Dict, List, Optional, Tuple, Union

__all__ = ['write_json', 'plot_chart', 'render_table', 'markdown_table']

PathLike = Union[str, os.PathLike]


def write_json(result: Dict[str, object], path: PathLike) -> None:
    """Write the result dict (plain python types only) to ``path``."""
    with open(path, 'w', encoding='utf-8') as file:
        json.dump(result, file, indent=2, allow_nan=False, default=_default)
        file.write('\n')


def _default(obj: object) -> object:
    if hasattr(obj, 'to_dict'):
        return obj.to_dict()
    raise TypeError(f'not JSON serialisable: {type(obj).__name__}')


def _median(entry: Optional[Dict[str, object]]) -> Optional[float]:
    return None if not entry else entry.get('median')  # type: ignore


def _fmt(value: Optional[float], digits: int = 1) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def _spread(entry: Optional[Dict[str, object]]) -> str:
    if not entry:
        return ''
    return f' ±{100 * entry["rel_spread"] / 2:.0f}%'  # type: ignore


def table_rows(result: Dict[str, object]) -> List[List[str]]:
    """One row of strings per model: the README / console table body."""
    rows = []
    for model in result['models']:  # type: ignore
        if 'error' in model:
            rows.append([model['name'], 'failed (see below)'] + [''] *
                        (len(table_header(result)) - 2))
            continue
        thr = model.get('throughput')
        lat = model.get('latency_ms')
        big = model.get('backbone_latency_ms', {})
        util = model.get('flop_utilisation')
        cells = [
            model['name'],
            _fmt(model['params_m'], 2),
            _fmt(model['gflops'], 3),
            _fmt(_median(thr), 1) + _spread(thr),
            _fmt(_median(lat), 1) + _spread(lat),
        ]
        for key in result['settings']['backbone_sizes_key']:  # type: ignore
            entry = big.get(key)
            if isinstance(entry, dict) and 'median' in entry:
                cells.append(_fmt(_median(entry), 0) + _spread(entry))
            else:  # n/a: the model failed at this size; -: not measured
                cells.append('n/a' if entry else '-')
        cells.append('-' if util is None else f'{100 * util:.1f}%')
        rows.append(cells)
    return rows


def table_header(result: Dict[str, object]) -> List[str]:
    settings = result['settings']
    batch = settings['batch_size']  # type: ignore
    size = settings['img_size']  # type: ignore
    return ([
        'model', 'params (M)', f'GFLOPs @{size}', f'img/s (b{batch} @{size})',
        f'latency ms (b1 @{size})'
    ] + [f'backbone ms @{k}'
         for k in settings['backbone_sizes_key']]  # type: ignore
            + ['FLOP utilisation'])


def markdown_table(result: Dict[str, object]) -> str:
    """The model table as GitHub markdown (for the README)."""
    header = table_header(result)
    lines = [
        '| ' + ' | '.join(header) + ' |',
        '| ' + ' | '.join('---' for _ in header) + ' |'
    ]
    lines += ['| ' + ' | '.join(row) + ' |' for row in table_rows(result)]
    settings = result['settings']
    lines += [
        '', f'Medians over {settings["repeats"]} interleaved repeats '
        f'({settings["backbone_repeats"]} for the backbone sizes); ± is half '
        'the range. n/a: the model fails at that size; -: not measured. '
        f'Command: `{result.get("command", "")}`.'
    ]
    return '\n'.join(lines)


def render_table(result: Dict[str, object]) -> None:
    """Print the model table, attention scaling and deploy results."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    console = Console(width=max(Console().width, 150))
    table = Table(title='Classifier = backbone + GAP + linear(1000); '
                  'medians over interleaved repeats, ± half the range')
    for name in table_header(result):
        table.add_column(name, overflow='fold')
    for row in table_rows(result):
        table.add_row(*[escape(cell) for cell in row])
    console.print(table)
    for model in result['models']:  # type: ignore
        for key in ('error', 'throughput_error'):
            if key in model:
                console.print(escape(f'{model["name"]}: {key}: {model[key]}'))
        for size, entry in model.get('backbone_latency_ms', {}).items():
            if 'error' in entry:
                console.print(
                    escape(f'{model["name"]} @{size}: {entry["error"]}'))
    matmul = result.get('matmul_gflops')
    if matmul:
        console.print(f'matmul: {_fmt(matmul["median"])} GFLOP/s'
                      f'{_spread(matmul)} ({result["machine"]["threads"]} '
                      'threads)')
    attn = result.get('attention')
    if attn:
        att = Table(title='one stage-1 attention layer: SAA vs full')
        for name in ('input', 'tokens', 'SAA ms', 'full ms', 'speed-up',
                     'SAA MiB', 'full MiB'):
            att.add_column(name)
        for point in attn['points']:  # type: ignore
            saa, full = point['saa'], point['full']
            att.add_row(
                f'{point["size"]}²', str(point['tokens']), _fmt(saa.get('ms')),
                _fmt(full.get('ms')) if 'ms' in full else full.get(
                    'skipped', full.get('error', '-')),
                _fmt(point.get('speedup')) +
                ('x' if point.get('speedup') else ''),
                _fmt(saa.get('peak_mib')), _fmt(full.get('peak_mib')))
        console.print(att)
        fits = attn['fit']  # type: ignore
        console.print('time ~ tokens^k: ' +
                      ', '.join(f'{kind} k={_fmt(fit.get("time_exponent"), 2)}'
                                for kind, fit in fits.items()))
    deploy = result.get('deploy')
    if deploy:
        console.print_json(data=deploy)


def _label_points(ax: object, points: List[Tuple[float, float, str]]) -> None:
    """Name each point, stepping labels down where they would overlap."""
    if not points:
        return
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    span_x = (max(xs) - min(xs)) or 1.0
    span_y = (max(ys) - min(ys)) or 1.0
    placed: List[Tuple[float, float]] = []
    for x, y, name in sorted(points, key=lambda p: (p[0], -p[1])):
        offset = 5
        # a label is ~0.15 of the width wide and ~0.05 of the height tall
        while any(
                abs(x - px) /
                span_x < 0.15 and abs(y + offset * span_y / 250 - py) /
                span_y < 0.05 for px, py in placed):
            offset -= 11
        placed.append((x, y + offset * span_y / 250))
        ax.annotate(
            name, (x, y),
            textcoords='offset points',
            xytext=(6, offset),
            fontsize=8)


def plot_chart(result: Dict[str, object], path: PathLike) -> None:
    """FLOPs vs throughput, and the attention scaling curves, as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    points: List[Tuple[float, float, str]] = []
    fig, (ax0, ax1, ax2) = plt.subplots(
        1, 3, figsize=(18, 5), gridspec_kw=dict(width_ratios=[1.3, 1, 1]))
    for model in result['models']:  # type: ignore
        thr = model.get('throughput')
        if 'error' in model or not thr or model.get('gflops') is None:
            continue
        ours = model['name'].startswith('SAEViT')
        ax0.errorbar(
            model['gflops'],
            thr['median'],
            yerr=[[thr['median'] - thr['low']], [thr['high'] - thr['median']]],
            fmt='*' if ours else 'o',
            color='tab:red' if ours else 'tab:blue',
            markersize=12 if ours else 7,
            capsize=3)
        points.append((model['gflops'], thr['median'], model['name']))
    _label_points(ax0, points)
    settings = result['settings']
    ax0.set_xlabel(f'GFLOPs (multiply-adds) @ {settings["img_size"]}²')
    ax0.set_ylabel(f'img/s, batch {settings["batch_size"]} '
                   f'({result["machine"]["device"]})')
    ax0.set_title('Classifier throughput vs FLOPs')
    ax0.grid(alpha=0.3)

    attn = result.get('attention')
    if attn:
        sizes = [p['size'] for p in attn['points']]
        panels = ((ax1, 'ms', 'time_exponent', 'ms per forward, batch 1',
                   'time'), (ax2, 'peak_mib', 'memory_exponent',
                             'peak MiB (torch allocator), batch 1', 'memory'))
        for ax, key, exp_key, ylabel, what in panels:
            for kind, color in (('saa', 'tab:red'), ('full', 'tab:gray')):
                pts = [(p['size'], p[kind][key]) for p in attn['points']
                       if p[kind].get(key, 0) > 0]
                if not pts:
                    continue
                exp = attn['fit'].get(kind, {}).get(exp_key)
                label = attn['labels'][kind] + (f' ({what} ~ tokens^{exp:.2f})'
                                                if exp is not None else '')
                ax.plot(*zip(*pts), marker='o', color=color, label=label)
            ax.set_xscale('log', base=2)
            ax.set_yscale('log')
            ax.set_xticks(sizes, [f'{s}²' for s in sizes])
            ax.minorticks_off()
            ax.set_xlabel('input image size (stage-1 map is 1/4 of it)')
            ax.set_ylabel(ylabel)
            ax.set_title(f'One stage-1 attention layer: {what}')
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3, which='both')
    else:
        ax1.set_axis_off()
        ax2.set_axis_off()
    meta = result['machine']
    fig.suptitle(
        f'SAEViT benchmark: {meta["cpu"]}, '
        f'{meta["threads"]} threads, torch {meta["torch"]}',
        fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def finite_or_none(value: float) -> Optional[float]:
    """``None`` for nan/inf, so the JSON stays strict."""
    return value if math.isfinite(value) else None
