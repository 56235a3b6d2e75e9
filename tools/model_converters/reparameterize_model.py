"""Convert a checkpoint to the inference form of its backbone.

    python tools/model_converters/reparameterize_model.py \
        configs/cls/saevit-t_8xb128-coslr-300e_in1k.py \
        work_dirs/saevit-t_8xb128-coslr-300e_in1k/epoch_300.pth \
        checkpoints/saevit-t_in1k_deploy.pth

Any config of ``configs/`` (cls, det, seg): its ``default_scope`` selects
the host. The output holds the whole model's state dict with the backbone
in the form ``SAEViT.switch_to_deploy()`` gives, and plain metadata; test it
with the same config and ``--cfg-options model.backbone.deploy=True``::

    python tools/test.py CONFIG OUT --cfg-options model.backbone.deploy=True

The conversion is :func:`saevit_mm.deploy.reparameterize_checkpoint`; this
script only reads and writes files.
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction

from saevit_mm.deploy import reparameterize_checkpoint


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Save a checkpoint with the backbone in its deploy form '
        '(SAEViT.switch_to_deploy), for the config with '
        'model.backbone.deploy=True.')
    parser.add_argument('config', help='the config the checkpoint is of')
    parser.add_argument('checkpoint', help='the eager checkpoint (.pth)')
    parser.add_argument('out', help='output file (.pth)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs, as in '
        'tools/test.py')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if osp.abspath(args.checkpoint) == osp.abspath(args.out):
        raise SystemExit('out must differ from checkpoint; the source is '
                         'kept.')
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    converted = reparameterize_checkpoint(cfg, args.checkpoint)
    if osp.dirname(args.out):
        os.makedirs(osp.dirname(args.out), exist_ok=True)
    torch.save(converted, args.out)
    torch.load(args.out, map_location='cpu', weights_only=True)  # self-check
    print(f'{args.out}: {len(converted["state_dict"])} tensors, backbone '
          'deployed; test it with --cfg-options model.backbone.deploy=True')


if __name__ == '__main__':
    main()
