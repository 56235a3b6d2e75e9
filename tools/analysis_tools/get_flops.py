"""Print parameters and FLOPs of every SAEViT arch, classifier and backbone.

FLOPs are multiply-adds counted by mmengine's ``FlopAnalyzer`` with the
attention products included (:mod:`saevit_mm.models.utils.flops`). The
classifier is the one ``benchmark.py`` measures
(``benchmark_utils.peers.GAPLinearClassifier``): SAEViT, global average
pooling of its last output and one linear layer, so it has the parameters
of the ``configs/cls`` classifier (``GlobalAveragePooling`` +
``LinearClsHead``). The average (additions) is not counted.

Examples::

    python tools/analysis_tools/get_flops.py                  # 224x224
    python tools/analysis_tools/get_flops.py --shape 512 683 --arch t
    python tools/analysis_tools/get_flops.py --cfg-options attn_type=mhsa
    python tools/analysis_tools/get_flops.py --json
"""
import argparse
import json
from typing import Dict, List, Optional, Sequence

from benchmark_utils.peers import GAPLinearClassifier
from mmengine.config import DictAction

from saevit_mm.models import SAEViT
from saevit_mm.models.utils import count_complexity

ATTN_OP = 'scaled_dot_product_attention'


def canonical_archs() -> List[str]:
    """The first name of every distinct entry of ``SAEViT.arch_zoo``."""
    names, seen = [], []
    for name, settings in SAEViT.arch_zoo.items():
        if not any(settings is s for s in seen):
            seen.append(settings)
            names.append(name)
    return names


def measure(archs: Sequence[str],
            shape: Sequence[int],
            num_classes: int = 1000,
            backbone_args: Optional[Dict] = None) -> List[Dict]:
    """One row per (arch, model): params, FLOPs and attention FLOPs."""
    rows = []
    for arch in archs:
        kwargs = dict(arch=arch, **(backbone_args or {}))
        backbone = SAEViT(**kwargs)
        classifier = GAPLinearClassifier(backbone, backbone.out_channels[-1],
                                         num_classes)
        models = [(f'classifier ({num_classes} classes)', classifier),
                  ('backbone', backbone)]
        for kind, model in models:
            result = count_complexity(model, (3, *shape))
            rows.append(
                dict(
                    arch=arch,
                    model=kind,
                    input=f'{shape[0]}x{shape[1]}',
                    params=result['params'],
                    flops=result['flops'],
                    attn_flops=result['flops_by_op'].get(ATTN_OP, 0)))
    return rows


def markdown(rows: Sequence[Dict]) -> str:
    """The rows as a markdown table (M params, G FLOPs)."""
    lines = [
        '| arch | model | input | params (M) | FLOPs (G) | of which '
        'attention (G) |', '| --- | --- | --- | ---: | ---: | ---: |'
    ]
    for row in rows:
        lines.append(f"| {row['arch']} | {row['model']} | {row['input']} | "
                     f"{row['params'] / 1e6:.2f} | {row['flops'] / 1e9:.3f} "
                     f"| {row['attn_flops'] / 1e9:.3f} |")
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--arch',
        nargs='+',
        default=canonical_archs(),
        choices=sorted(SAEViT.arch_zoo),
        help='archs to measure (default: every arch of SAEViT.arch_zoo)')
    parser.add_argument(
        '--shape',
        nargs='+',
        type=int,
        default=[224],
        help='input size: one number (square) or H W (default: 224)')
    parser.add_argument(
        '--num-classes',
        type=int,
        default=1000,
        help='classes of the classifier head (default: 1000)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        help='extra SAEViT arguments, e.g. attn_type=mhsa use_dwsconv=False')
    parser.add_argument(
        '--json', action='store_true', help='print JSON, not a table')
    args = parser.parse_args(argv)
    if len(args.shape) not in (1, 2) or min(args.shape) < 1:
        parser.error('--shape takes one or two positive ints (H W), got '
                     f'{args.shape}.')
    if len(args.shape) == 1:
        args.shape = args.shape * 2
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    rows = measure(args.arch, args.shape, args.num_classes, args.cfg_options)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(markdown(rows))
    print('\nFLOPs: multiply-adds counted by mmengine FlopAnalyzer, '
          'scaled_dot_product_attention included.')


if __name__ == '__main__':
    main()
