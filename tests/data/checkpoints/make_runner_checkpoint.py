"""Write the runner checkpoint that tests/test_checkpoint_loader.py loads in
the other stack: the toy Runner's last checkpoint (numpy values in the
message hub), named by this interpreter's torch and numpy.

    .venv/bin/python tests/data/checkpoints/make_runner_checkpoint.py
    ~/.cache/saevit_mm/venvs/classic/bin/python \\
        tests/data/checkpoints/make_runner_checkpoint.py
"""
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/: toy_runner

from toy_runner import MAX_ITERS, NumpyInfoHook, build_runner  # noqa: E402


def main() -> None:
    torch_release = '.'.join(torch.__version__.split('.')[:2])
    numpy_major = np.__version__.split('.')[0]
    out = HERE / f'runner_torch{torch_release}_numpy{numpy_major}.pth'
    with tempfile.TemporaryDirectory() as work_dir:
        build_runner(Path(work_dir), [NumpyInfoHook()]).train()
        shutil.copyfile(Path(work_dir) / f'iter_{MAX_ITERS}.pth', out)
    print(f'wrote {out} (torch {torch.__version__}, numpy {np.__version__})')


if __name__ == '__main__':
    main()
