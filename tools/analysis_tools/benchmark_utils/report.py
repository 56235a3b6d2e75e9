"""Benchmark output: JSON file, PNG chart and a console table."""
import json
import math
import os
from typing import Dict, List, Optional, Tuple, Union

__all__ = [
    'write_json', 'plot_chart', 'render_table', 'markdown_table',
    'accuracy_points', 'top1_sources'
]

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
            '-' if model.get('top1') is None else f'{model["top1"]:g}',
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
        'model', 'IN-1k top-1 % (published)', 'params (M)', f'GFLOPs @{size}',
        f'img/s (b{batch} @{size})', f'latency ms (b1 @{size})'
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
    lines += ['', 'Published top-1 (not measured here), sources:', '']
    lines += [f'- {name}: {source}' for name, source in top1_sources(result)]
    return '\n'.join(lines)


def top1_sources(result: Dict[str, object]) -> List[Tuple[str, str]]:
    """``(model, where its top-1 comes from)`` for every eager model."""
    return [
        (model['name'], model.get('top1_source')
         or f'none ({model.get("top1_error", "no source given")})')
        for model in result['models']  # type: ignore
        if 'variant_of' not in model
    ]


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
        for key in ('error', 'throughput_error', 'top1_error'):
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


#: label offsets (points) tried in turn: right, then left of the marker
_LABEL_OFFSETS = ((6, 3), (6, -11), (-6, 3), (-6, -11), (6, 13), (6, -21),
                  (-6, 13), (-6, -21), (6, 23), (-6, 23))


def _label_points(ax: object, points: List[Tuple[float, float, str]]) -> None:
    """Name each point where its label covers no other label, marker or
    the legend.

    Tries the offsets of :data:`_LABEL_OFFSETS` (right of the marker first,
    then left) in display space, estimating a label's box from its length
    (8 pt font); falls back to the least crowded offset, avoiding above
    all a label that leaves the axes.
    """
    if not points:
        return
    fig = ax.figure
    ax.autoscale_view()  # final data limits (the layout must be done)
    to_px = ax.transData.transform
    pt = fig.dpi / 72.0  # pixels per point
    markers = [tuple(to_px((x, y))) for x, y, _ in points]
    frame = tuple(ax.get_window_extent().extents)
    boxes: List[Tuple[float, float, float, float]] = [
        (mx - 5 * pt, my - 5 * pt, mx + 5 * pt, my + 5 * pt)
        for mx, my in markers
    ]
    if ax.get_legend() is not None:
        boxes.append(tuple(ax.get_legend().get_window_extent().extents))

    def overlap(a, b) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    order = sorted(range(len(points)), key=lambda i: -points[i][1])
    for i in order:
        x, y, name = points[i]
        mx, my = markers[i]
        width, height = 4.6 * pt * len(name), 9 * pt
        best = None
        for dx, dy in _LABEL_OFFSETS:
            x0 = mx + dx * pt - (width if dx < 0 else 0)
            y0 = my + dy * pt
            box = (x0, y0, x0 + width, y0 + height)
            own = boxes[i]
            cost = sum(overlap(box, b) for b in boxes if b is not own)
            # a label sticking out of the axes is clipped: worst of all
            cost += 10 * (width * height - overlap(box, frame))
            if best is None or cost < best[0]:
                best = (cost, dx, dy, box)
            if cost == 0:
                break
        _, dx, dy, box = best
        boxes.append(box)
        ax.annotate(
            name, (x, y),
            textcoords='offset points',
            xytext=(dx, dy),
            ha='right' if dx < 0 else 'left',
            fontsize=8)


#: marker colour per host (SAEViT: red stars; mmpretrain: blue)
_SCOPE_COLORS = {'timm': 'tab:purple', 'mmdet': 'tab:green'}


def _style(model: Dict[str, object],
           rows: Dict[str, Dict[str, object]]) -> Dict[str, object]:
    """Marker of a row: SAEViT red stars, peers coloured by host, deploy
    variants hollow."""
    base = rows.get(model.get('variant_of', model['name']), model)
    ours = str(base['name']).startswith('SAEViT')
    color = 'tab:red' if ours else _SCOPE_COLORS.get(
        base.get('scope'), 'tab:blue')
    return dict(
        fmt='*' if ours else 'o',
        color=color,
        mfc='none' if 'variant_of' in model else color,
        markersize=13 if ours else 7)


def _legend(ax: object) -> None:
    from matplotlib.lines import Line2D
    handles = [
        Line2D([], [],
               ls='',
               marker='*',
               ms=11,
               color='tab:red',
               label='SAEViT (top-1: the paper\'s)'),
        Line2D([], [],
               ls='',
               marker='*',
               ms=11,
               color='tab:red',
               mfc='none',
               label='SAEViT deploy variant'),
        Line2D([], [],
               ls='',
               marker='o',
               color='tab:blue',
               label='mmpretrain peer'),
        Line2D([], [],
               ls='',
               marker='o',
               color='tab:green',
               label='mmdet peer'),
        Line2D([], [],
               ls='',
               marker='o',
               color='tab:purple',
               label='timm peer (deploy form where it has one)'),
    ]
    # below the axes: inside, it may hide a point
    ax.legend(
        handles=handles,
        fontsize=8,
        ncol=3,
        loc='upper center',
        bbox_to_anchor=(0.5, -0.13))


def accuracy_points(result: Dict[str, object]) -> List[Dict[str, object]]:
    """The rows of the accuracy panel: every eager model and deploy variant
    with a published top-1 and a measured throughput."""
    return [
        model for model in result['models']  # type: ignore
        if 'error' not in model and model.get('throughput')
        and model.get('top1') is not None
    ]


def plot_accuracy_panel(
        ax: object, result: Dict[str,
                                 object]) -> List[Tuple[float, float, str]]:
    """Published top-1 (y) against the throughput of this run (x).

    Returns:
        The points to label (with :func:`_label_points`, once the figure
        is laid out).
    """
    rows = {m['name']: m for m in result['models']}  # type: ignore
    points = accuracy_points(result)
    labels: List[Tuple[float, float, str]] = []
    for model in points:
        thr, style = model['throughput'], _style(model, rows)
        base = rows.get(model.get('variant_of', ''))
        if base is not None and base.get('throughput'):  # link to eager
            ax.plot([base['throughput']['median'], thr['median']],
                    [base['top1'], model['top1']],
                    ':',
                    color=style['color'],
                    alpha=0.6)
        ax.errorbar(
            thr['median'],
            model['top1'],
            xerr=[[thr['median'] - thr['low']], [thr['high'] - thr['median']]],
            capsize=3,
            **style)
        labels.append((thr['median'], model['top1'], model['name']))
    settings = result['settings']
    ax.set_xlabel(f'img/s, batch {settings["batch_size"]} @ '
                  f'{settings["img_size"]}², measured in this run '
                  f'({result["machine"]["device"]}); bars: range')
    ax.set_ylabel('published ImageNet-1K top-1 % ("top1_source")')
    ax.set_title('Accuracy vs speed: published top-1, measured throughput')
    ax.grid(alpha=0.3)
    if points:
        _legend(ax)
    else:
        ax.text(
            0.5,
            0.5,
            'no model with both a top-1 and a throughput',
            ha='center',
            transform=ax.transAxes)
    return labels


def plot_chart(result: Dict[str, object], path: PathLike) -> None:
    """FLOPs vs throughput, published top-1 vs throughput, and the
    attention scaling curves, as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    points: List[Tuple[float, float, str]] = []
    fig, ((ax0, ax3), (ax1, ax2)) = plt.subplots(2, 2, figsize=(16, 11))
    rows = {m['name']: m for m in result['models']}  # type: ignore
    for model in result['models']:  # type: ignore
        thr = model.get('throughput')
        if 'error' in model or not thr or model.get('gflops') is None:
            continue
        ax0.errorbar(
            model['gflops'],
            thr['median'],
            yerr=[[thr['median'] - thr['low']], [thr['high'] - thr['median']]],
            capsize=3,
            **_style(model, rows))
        points.append((model['gflops'], thr['median'], model['name']))
    settings = result['settings']
    ax0.set_xlabel(f'GFLOPs (multiply-adds) @ {settings["img_size"]}²')
    ax0.set_ylabel(f'img/s, batch {settings["batch_size"]} '
                   f'({result["machine"]["device"]})')
    ax0.set_title('Classifier throughput vs FLOPs')
    ax0.grid(alpha=0.3)
    accuracy_labels = plot_accuracy_panel(ax3, result)

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
    # after the layout: labels are placed in pixels
    _label_points(ax0, points)
    _label_points(ax3, accuracy_labels)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def finite_or_none(value: float) -> Optional[float]:
    """``None`` for nan/inf, so the JSON stays strict."""
    return value if math.isfinite(value) else None
