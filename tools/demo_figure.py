"""The demo's picture: training curves and predictions painted by the hosts.

The predictions are the images the hosts' own visualisation hooks paint
during ``tools/test.py --show-dir`` (ground truth beside prediction, as each
host draws them); this module only lays them out under the loss curves.
"""
from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use('Agg')  # noqa: E402  (no display on servers)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.image import imread  # noqa: E402

__all__ = ['painted_images', 'save_demo_figure']

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.JPEG')


def painted_images(show_dir: Path, count: int) -> List[Path]:
    """The first ``count`` images painted under ``show_dir`` (sorted)."""
    found = sorted(
        p for p in show_dir.rglob('*') if p.suffix in IMAGE_SUFFIXES)
    return found[:count]


def save_demo_figure(out: Path, curves: Dict[str, Dict[str, Sequence[float]]],
                     images: Dict[str, List[Path]], titles: Dict[str,
                                                                 str]) -> Path:
    """Draw one column per task: its loss curve above its predictions.

    Args:
        out: PNG file to write.
        curves: Task -> ``{'step': [...], 'loss': [...]}``.
        images: Task -> painted prediction images.
        titles: Task -> column title (e.g. the metric it reached).

    Returns:
        ``out``.
    """
    tasks = list(curves)
    rows = 1 + max((len(images.get(t, [])) for t in tasks), default=0)
    fig, axes = plt.subplots(
        rows,
        len(tasks),
        figsize=(5 * len(tasks), 2.2 + 3.2 * (rows - 1)),
        squeeze=False,
        gridspec_kw=dict(height_ratios=[2.2] + [3.2] * (rows - 1)))
    for col, task in enumerate(tasks):
        ax = axes[0][col]
        ax.plot(curves[task]['step'], curves[task]['loss'], lw=1.5)
        ax.set_title(titles.get(task, task), fontsize=10)
        ax.set_xlabel('iteration')
        ax.set_ylabel('training loss')
        ax.grid(alpha=0.3)
        for row in range(1, rows):
            ax = axes[row][col]
            ax.axis('off')
            task_images = images.get(task, [])
            if row - 1 < len(task_images):
                ax.imshow(imread(task_images[row - 1]))
                ax.set_title(task_images[row - 1].name, fontsize=7)
    fig.suptitle('saevit_mm demo: training curves (top) and test '
                 'predictions painted by the hosts (below)')
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
