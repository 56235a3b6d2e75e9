"""Print parameters and FLOPs of every SAEViT arch, classifier and backbone.

FLOPs are multiply-adds counted by mmengine's ``FlopAnalyzer`` with the
attention products included (:mod:`saevit_mm.models.utils.flops`). The
classifier is the one ``benchmark.py`` measures
(``benchmark.GAPLinearClassifier``): SAEViT, global average
pooling of its last output and one linear layer, so it has the parameters
of the ``configs/cls`` classifier (``GlobalAveragePooling`` +
``LinearClsHead``). The average (additions) is not counted.

Examples::

    python tools/analysis_tools/get_flops.py                  # 224x224
    python tools/analysis_tools/get_flops.py --shape 512 683 --arch t
    python tools/analysis_tools/get_flops.py --cfg-options attn_type=mhsa
    python tools/analysis_tools/get_flops.py --json
    # SAA delegate bounds at detection / segmentation sizes, backbone only
    python tools/analysis_tools/get_flops.py --arch t --backbone-only \
        --sizes 224 512 800x1333 1024x2048 --max-delegates none 4096 1024
"""
import argparse
import json
from typing import Dict, List, Optional, Sequence

from benchmark import GAPLinearClassifier
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
            backbone_args: Optional[Dict] = None,
            backbone_only: bool = False) -> List[Dict]:
    """One row per (arch, model): params, FLOPs and attention FLOPs."""
    rows = []
    for arch in archs:
        kwargs = dict(arch=arch, **(backbone_args or {}))
        backbone = SAEViT(**kwargs)
        models = [('backbone', backbone)]
        if not backbone_only:
            classifier = GAPLinearClassifier(backbone,
                                             backbone.out_channels[-1],
                                             num_classes)
            models.insert(0,
                          (f'classifier ({num_classes} classes)', classifier))
        for kind, model in models:
            result = count_complexity(model, (3, *shape))
            rows.append(
                dict(
                    arch=arch,
                    model=kind,
                    input=f'{shape[0]}x{shape[1]}',
                    max_delegates=_bound_label(
                        backbone.arch_settings['max_delegates']),
                    params=result['params'],
                    flops=result['flops'],
                    attn_flops=result['flops_by_op'].get(ATTN_OP, 0)))
    return rows


def _bound_label(bounds: Sequence[Optional[int]]) -> str:
    """``'1024'`` for one bound in every stage, else one entry per stage."""
    labels = ['none' if b is None else str(b) for b in bounds]
    return labels[0] if len(set(labels)) == 1 else '/'.join(labels)


def parse_size(text: str) -> List[int]:
    """``'512'`` -> ``[512, 512]``; ``'800x1333'`` -> ``[800, 1333]``."""
    parts = text.lower().split('x')
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0
                                           for p in parts):
        raise argparse.ArgumentTypeError(
            f'a size is N or HxW with positive ints, got {text!r}')
    return [int(p) for p in parts] * (3 - len(parts))


def parse_bound(text: str) -> Optional[int]:
    """``'none'`` -> None (no bound); ``'1024'`` -> 1024."""
    if text.lower() == 'none':
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(
            f'a bound is a positive int or "none", got {text!r}')
    return int(text)


def markdown(rows: Sequence[Dict]) -> str:
    """The rows as a markdown table (M params, G FLOPs)."""
    lines = [
        '| arch | model | input | max_delegates | params (M) | FLOPs (G) '
        '| of which attention (G) |',
        '| --- | --- | --- | --- | ---: | ---: | ---: |'
    ]
    for row in rows:
        lines.append(f"| {row['arch']} | {row['model']} | {row['input']} | "
                     f"{row['max_delegates']} | "
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
        '--sizes',
        nargs='+',
        type=parse_size,
        help='several input sizes instead of --shape, each N or HxW')
    parser.add_argument(
        '--max-delegates',
        nargs='+',
        type=parse_bound,
        help='SAA delegate bounds to compare (the same in every stage), '
        'each a positive int or "none" (default: the arch\'s own)')
    parser.add_argument(
        '--backbone-only',
        action='store_true',
        help='count the backbone only, not the classifier')
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
    if 'max_delegates' in args.cfg_options and args.max_delegates:
        parser.error('give the bound with --max-delegates or with '
                     '--cfg-options max_delegates=..., not both.')
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    rows = []
    for shape in args.sizes or [args.shape]:
        for bound in args.max_delegates or ['arch']:
            extra = dict(args.cfg_options)
            if bound != 'arch':
                extra['max_delegates'] = bound
            rows += measure(args.arch, shape, args.num_classes, extra,
                            args.backbone_only)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(markdown(rows))
    print('\nFLOPs: multiply-adds counted by mmengine FlopAnalyzer, '
          'scaled_dot_product_attention included.')


if __name__ == '__main__':
    main()
