"""Where the time of SAEViT and its peers goes on this machine.

Per operator category (``torch.profiler``, the models interleaved in one
process) and, for SAEViT, per stage with its multiply-adds per second. The
classifiers are the ones ``benchmark.py`` times (backbone + global average
pooling + Linear(1000), eval mode, float32), each in eager form and/or in
deploy form (:func:`saevit_mm.deploy.switch_to_deploy`).

Examples::

    # SAEViT-t and SAEViT-s, eager and deployed, batch 32 at 224
    python tools/analysis_tools/op_profile.py
    python tools/analysis_tools/op_profile.py --models SAEViT-t ResNet-18 \
        --forms eager --batch-size 1 --img-size 800 1333
"""
import argparse

import torch
from benchmark_utils.op_profile import profile_categories, stage_profile
from benchmark_utils.peers import build_classifier, default_specs
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from saevit_mm.deploy import switch_to_deploy


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        '--models',
        nargs='+',
        default=['SAEViT-t', 'SAEViT-s'],
        help='display names (as in benchmark.py); ratios are to the first')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument(
        '--img-size', type=int, nargs='+', default=[224], help='H [W]')
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument(
        '--forms',
        nargs='+',
        choices=('eager', 'deploy'),
        default=['eager', 'deploy'],
        help='eager model and/or its deploy form')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    height, width = (args.img_size * 2)[:2]
    specs = default_specs(args.models)  # KeyError lists the known names
    models = {}
    for form in args.forms:
        for spec in specs:
            model = build_classifier(spec).eval()
            if form == 'deploy':
                switch_to_deploy(model)
            suffix = ' [deployed]' if len(args.forms) > 1 and \
                form == 'deploy' else ''
            models[spec.name + suffix] = model
    x = torch.randn(args.batch_size, 3, height, width)
    times = profile_categories(models, x, rounds=args.rounds)
    names = list(models)
    first = names[0]
    console = Console()
    table = Table(title=f'ms per forward, batch {args.batch_size} at '
                  f'{height}x{width}, {args.threads} threads, '
                  f'{" and ".join(args.forms)}')
    table.add_column('category')
    for name in names:
        table.add_column(escape(name), justify='right')
        if name != first:
            table.add_column(escape(f'/ {first}'), justify='right')
    categories = sorted(
        {c for t in times.values() for c in t},
        key=lambda c: -sum(t.get(c, 0.) for t in times.values()))
    for category in categories + ['total']:
        row = [category]
        for name in names:
            ms = sum(times[name].values()) if category == 'total' \
                else times[name].get(category, 0.)
            ref = sum(times[first].values()) if category == 'total' \
                else times[first].get(category, 0.)
            row.append(f'{ms:.1f}')
            if name != first:
                row.append(f'{ms / ref:.2f}' if ref else '-')
        table.add_row(*row)
    console.print(table)
    for name, stages in stage_profile(models, x).items():
        table = Table(title=escape(f'{name}: stages (hooks, median of 3)'))
        for column in ('stage', 'ms', 'share', 'G multiply-adds', 'G/s'):
            table.add_column(column, justify='right')
        total = sum(s['ms'] for s in stages.values())
        for stage, s in stages.items():
            table.add_row(stage, f"{s['ms']:.1f}",
                          f"{100 * s['ms'] / total:.0f}%",
                          f"{s['macs'] / 1e9:.2f}",
                          f"{s['macs'] / s['ms'] / 1e6:.1f}")
        console.print(table)


if __name__ == '__main__':
    main()
