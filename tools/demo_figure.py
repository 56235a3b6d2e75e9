"""The demo's picture: training curves and predictions painted by the hosts.

The predictions are the images the hosts' own visualisation hooks paint
during ``tools/test.py --show-dir`` (ground truth and prediction, as each
host draws them; ``tools/demo.py`` has mmpretrain upscale its 64-pixel
inputs before it writes the labels on them). This module lays them out
under the loss curves, under a title that says the data is synthetic.
"""
from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use('Agg')  # noqa: E402  (no display on servers)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.image import imread  # noqa: E402

TITLE = ('saevit_mm demo on synthetic data (shapes drawn by '
         'tools/misc/make_demo_data.py; not ImageNet, COCO or ADE20K)\n'
         'training curves and test predictions painted by the hosts')


def painted_images(show_dir: Path, count: int) -> List[Path]:
    """The first ``count`` images painted under ``show_dir`` (sorted)."""
    suffixes = ('.png', '.jpg', '.jpeg', '.JPEG')
    return sorted(p for p in show_dir.rglob('*')
                  if p.suffix in suffixes)[:count]


def save_demo_figure(out: Path, results: Sequence[Dict]) -> Path:
    """One column per task result (``task``, ``metric``, ``text``,
    ``curve``: ``{'step': [...], 'loss': [...]}``, ``images``): the loss
    curve above the painted predictions. Returns ``out``."""
    rows = 1 + max((len(r['images']) for r in results), default=0)
    fig, axes = plt.subplots(
        rows,
        len(results),
        figsize=(5 * len(results), 3.2 * rows - 1),
        squeeze=False,
        gridspec_kw=dict(height_ratios=[2.2] + [3.2] * (rows - 1)))
    for column, result in zip(axes.T, results):
        column[0].plot(result['curve']['step'], result['curve']['loss'])
        column[0].set(
            title=f'{result["task"]}: {result["metric"]} '
            f'{result["text"]}',
            xlabel='iteration',
            ylabel='training loss')
        column[0].grid(alpha=0.3)
        for ax in column[1:]:
            ax.axis('off')
        for ax, image in zip(column[1:], result['images']):
            ax.imshow(imread(image))
            ax.set_title(image.name, fontsize=7)
    fig.suptitle(TITLE)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
