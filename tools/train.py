"""Train with an mmpretrain, mmdet or mmseg config of saevit_mm.

The config's ``default_scope`` selects the host. Examples::

    python tools/train.py configs/cls/saevit-t_8xb128-coslr-300e_in1k.py
    python tools/train.py CONFIG --resume            # latest in work_dir
    python tools/train.py CONFIG --no-validate --no-persistent-workers
    bash tools/dist_train.sh CONFIG 2                 # torchrun, CPU or GPU
"""
from saevit_mm.engine.cli import (apply_train_args, build_runner, load_config,
                                  train_parser)
from saevit_mm.engine.dist import close_distributed


def main() -> None:
    parser = train_parser()
    args = parser.parse_args()
    cfg = load_config(args)
    try:
        apply_train_args(cfg, args)
    except RuntimeError as err:
        parser.error(str(err))
    runner = build_runner(cfg)
    runner.train()
    close_distributed()


if __name__ == '__main__':
    main()
