"""Convert a classification checkpoint into a backbone-only checkpoint.

    python tools/model_converters/cls_to_backbone.py \
        work_dirs/saevit-t_8xb128-coslr-300e_in1k/epoch_300.pth \
        checkpoints/saevit-t_in1k_backbone.pth

The output keeps the ``backbone.`` prefix and holds tensors only (it loads
with ``torch.load(weights_only=True)``). Give its path to a config in
``configs/det`` or ``configs/seg`` with ``--cfg-options
model.backbone.init_cfg.checkpoint=PATH`` (or in a child config). The
conversion itself is :func:`saevit_mm.models.utils.checkpoint.
convert_cls_to_backbone`; this script only reads and writes files.
"""
import argparse
import hashlib
import os
import os.path as osp

import torch

from saevit_mm.engine.checkpoint_loader import safe_load_checkpoint
from saevit_mm.models.utils.checkpoint import (BACKBONE_PREFIX,
                                               convert_cls_to_backbone)
from saevit_mm.version import __version__


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Keep the backbone tensors of a classification '
        'checkpoint (prefix kept), as a tensors-only file.')
    parser.add_argument('src', help='classification checkpoint (.pth)')
    parser.add_argument('dst', help='output file (.pth)')
    parser.add_argument(
        '--prefix',
        default=BACKBONE_PREFIX,
        help=f'prefix of the backbone keys (default: {BACKBONE_PREFIX})')
    return parser.parse_args()


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    args = parse_args()
    if osp.abspath(args.src) == osp.abspath(args.dst):
        raise SystemExit('dst must differ from src; the source is kept.')
    checkpoint = safe_load_checkpoint(args.src, map_location='cpu')
    converted = convert_cls_to_backbone(
        checkpoint, prefix=args.prefix, source=osp.basename(args.src))
    converted['meta'].setdefault('source_sha256', sha256(args.src))
    converted['meta'].setdefault('saevit_mm_version', __version__)
    if osp.dirname(args.dst):
        os.makedirs(osp.dirname(args.dst), exist_ok=True)
    torch.save(converted, args.dst)
    torch.load(args.dst, map_location='cpu', weights_only=True)  # self-check
    print(f'{args.dst}: {converted["meta"]["num_tensors"]} tensors under '
          f'{converted["meta"]["prefix"]!r}, sha256 {sha256(args.dst)}')


if __name__ == '__main__':
    main()
