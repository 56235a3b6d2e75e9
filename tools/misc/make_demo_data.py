"""Generate the synthetic demo data (ImageNet, COCO and ADE20K layouts).

Shapes on synthetic scenes, not a subset of any real data set (see
``tools/misc/demo_data.py`` for what they hold and the layouts).
Deterministic (same seed, same bytes), no download, about 25 s on two CPU
cores; a re-run with the same parameters skips the sets that are there.
Examples::

    python tools/misc/make_demo_data.py --out data/demo
    python tools/misc/make_demo_data.py --out data/demo --seed 1 --tasks det
"""
import argparse

from demo_data import TASKS, DemoDataSpec, make_demo_data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--out', default='data/demo', help='output root')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--tasks', nargs='+', choices=list(TASKS), default=list(TASKS))
    parser.add_argument(
        '--tiny', action='store_true', help='a few images per split')
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f'--seed must be >= 0, got {args.seed}')
    make_demo_data(args.out, args.seed, args.tasks,
                   DemoDataSpec.tiny() if args.tiny else None)


if __name__ == '__main__':
    main()
