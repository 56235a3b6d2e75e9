"""Test a checkpoint with an mmpretrain, mmdet or mmseg config of saevit_mm.

The config's ``default_scope`` selects the host, its metric and the meaning
of ``--out`` and ``--tta`` (``python tools/test.py -h``). Examples::

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --show-dir vis/
    python tools/test.py CLS_CONFIG CHECKPOINT --tta --out preds.pkl
    python tools/test.py SEG_CONFIG CHECKPOINT --out label_maps/
    bash tools/dist_test.sh CONFIG CHECKPOINT 2
"""
from saevit_mm.engine.cli import (apply_test_args, build_runner, dump_metrics,
                                  load_config, test_parser)
from saevit_mm.engine.dist import close_distributed


def main() -> None:
    parser = test_parser()
    args = parser.parse_args()
    cfg = load_config(args)
    try:
        apply_test_args(cfg, args)
    except ValueError as err:
        parser.error(str(err))
    runner = build_runner(cfg)
    metrics = runner.test()
    dump_metrics(metrics, args)
    close_distributed()


if __name__ == '__main__':
    main()
