"""Generate the synthetic demo data (ImageNet, COCO and ADE20K layouts).

Deterministic (same seed, same bytes), no download, well under a minute on
two CPU cores. Re-running with the same parameters does nothing; other
parameters regenerate the affected sets. Examples::

    python tools/misc/make_demo_data.py --out data/demo
    python tools/misc/make_demo_data.py --out data/demo --seed 1 --tasks det
    python tools/misc/make_demo_data.py --det-counts 400 80 --det-size 160 320
"""
import argparse
import time
from typing import Iterable, Optional, Sequence, TypeVar

from rich.progress import track

from demo_data import (TASKS, DemoDataSpec, SplitSpec, is_up_to_date,
                       make_demo_data)

T = TypeVar('T')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    default = DemoDataSpec()
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--out', default='data/demo', help='output root')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--tasks',
        nargs='+',
        choices=list(TASKS),
        default=list(TASKS),
        help='which sets to make')
    parser.add_argument('--quiet', action='store_true', help='no progress')
    for task, what in (('cls', 'per class'), ('det', 'images'), ('seg',
                                                                 'images')):
        split: SplitSpec = getattr(default, task)
        parser.add_argument(
            f'--{task}-counts',
            nargs=2,
            type=int,
            metavar=('TRAIN', 'VAL'),
            default=[split.train, split.val],
            help=f'{task} train and val {what}')
        parser.add_argument(
            f'--{task}-size',
            nargs=2,
            type=int,
            metavar=('MIN', 'MAX'),
            default=[split.min_size, split.max_size],
            help=f'{task} image side range in pixels')
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f'--seed must be >= 0, got {args.seed}.')
    try:
        args.spec = DemoDataSpec(
            **{
                task:
                SplitSpec(*getattr(args, f'{task}_counts'),
                          *getattr(args, f'{task}_size'))
                for task in TASKS
            })
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)

    def progress(items: Iterable[T], description: str,
                 total: int) -> Iterable[T]:
        if args.quiet:
            return items
        return track(items, description=f'{description:<22}', total=total)

    start = time.perf_counter()
    fresh = {
        task: is_up_to_date(args.out, task, args.seed,
                            getattr(args.spec, task))
        for task in args.tasks
    }
    roots = make_demo_data(
        args.out,
        seed=args.seed,
        tasks=args.tasks,
        spec=args.spec,
        progress=progress)
    for task, root in roots.items():
        state = 'up to date, skipped' if fresh[task] else 'generated'
        print(f'{task}: {root} ({state})')
    print(f'done in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    main()
