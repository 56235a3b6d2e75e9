"""The end-to-end demo on synthetic data: three hosts, one backbone.

    python tools/demo.py [--out work_dirs/demo] [--det retinanet]

1. generate the synthetic demo data (ImageNet, COCO and ADE20K layouts);
2. train and test SAEViT-T on the ImageNet-layout data (mmpretrain);
3. convert its checkpoint into a backbone-only, tensors-only file;
4. fine-tune and test a detector from that backbone (mmdet);
5. fine-tune and test a Semantic FPN segmenter from it (mmseg), side by
   side with step 4, each with one CPU thread (``--parallel-threads``): on
   a small CPU that does more work per second than two runs in a row;
6. print one results table and write a picture with the training curves and
   predictions the hosts painted.

Every step runs ``tools/*.py`` as a subprocess, as a user would.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from mmengine.config import Config
from rich.console import Console
from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from demo_figure import painted_images, save_demo_figure
from demo_steps import (REPO, Lane, Step, StepFailed, last_checkpoint,
                        run_lanes, run_step, train_losses, train_test)

DEMO_CONFIGS = REPO / 'configs' / 'demo'
#: task -> (config, metric key, metric name)
TASKS = {
    'classification':
    ('saevit-t_1xb16-5e_demo-in1k-64px.py', 'accuracy/top1', 'top-1 acc. (%)'),
    'retinanet': ('retinanet_saevit-t_fpn_1xb2-4e_demo-coco.py',
                  'coco/bbox_mAP', 'bbox mAP (%)'),
    'mask-rcnn': ('mask-rcnn_saevit-t_fpn_1xb2-4e_demo-coco.py',
                  'coco/bbox_mAP', 'bbox mAP (%)'),
    'fpn':
    ('fpn_saevit-t_1xb4-800_demo-ade20k-128x128.py', 'mIoU', 'mIoU (%)'),
    'upernet':
    ('upernet_saevit-t_1xb4-400_demo-ade20k-128x128.py', 'mIoU', 'mIoU (%)'),
}
#: test options per task: mmpretrain paints its label text at the scale of
#: the image, so the 64-pixel classification inputs are upscaled first
PAINT_OPTIONS = {'classification': ['default_hooks.visualization.resize=256']}

console = Console()


def train_and_test(task: str,
                   out: Path,
                   progress: Progress,
                   backbone: Optional[Path] = None,
                   options: Sequence[str] = (),
                   env: Optional[Dict[str, str]] = None) -> Lane:
    """The lane of one task (see :func:`demo_steps.run_lanes`): train, test
    and the task's result. The config is read here, in the thread that runs
    all lanes, never in two threads at once."""
    config, metric, metric_name = TASKS[task]
    config, work_dir = DEMO_CONFIGS / config, out / task
    options = [*options, *PAINT_OPTIONS.get(task, [])]
    if backbone is not None:
        options.append(f'model.backbone.init_cfg.checkpoint={backbone}')
    bar = progress.add_task(task, total=None)
    train, test, metrics = yield from train_test(
        task,
        config,
        work_dir,
        options,
        env,
        ['--show-dir', 'painted'],
        on_progress=lambda done, total: progress.update(
            bar, completed=done, total=total),
        # epoch-based runs log iterations per epoch
        max_epochs=Config.fromfile(config).train_cfg.get('max_epochs'))
    progress.update(bar, completed=1, total=1)
    coco = metric.startswith('coco/')  # CocoMetric reports fractions
    value = float(metrics[metric]) * (100 if coco else 1)
    text = f'{value:.1f}'
    if coco and f'{metric}_50' in metrics:  # the looser IoU 0.5 threshold
        text += f' (mAP50 {100 * float(metrics[metric + "_50"]):.1f})'
    return dict(
        task=task,
        config=config.name,
        metric=metric_name,
        value=value,
        text=text,
        train_s=train.seconds,
        test_s=test.seconds,
        checkpoint=str(last_checkpoint(work_dir)),
        curve=train_losses(work_dir),
        images=painted_images(work_dir, count=3))


def fine_tune(
        tasks: Sequence[str],
        out: Path,
        progress: Progress,
        backbone: Optional[Path],
        parallel_threads: int,
        options: Optional[Mapping[str, Sequence[str]]] = None) -> List[Dict]:
    """Fine-tune and test ``tasks`` from ``backbone``: side by side, each
    with ``parallel_threads`` CPU threads, or (0) one after the other.
    ``options`` maps a task to extra ``--cfg-options`` of its runs."""
    threads = str(parallel_threads)
    env = dict(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    lanes = {
        task:
        train_and_test(task, out, progress, backbone, (options
                                                       or {}).get(task, ()),
                       env if parallel_threads else None)
        for task in tasks
    }
    if parallel_threads > 0:
        results = run_lanes(lanes)
        return [results[task] for task in tasks]
    return [run_lanes({task: lane})[task] for task, lane in lanes.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--out',
        type=Path,
        default=Path('work_dirs/demo'),
        help='logs, checkpoints, results and the picture')
    parser.add_argument(
        '--data',
        type=Path,
        default=Path('data/demo'),
        help='where the synthetic data is generated')
    parser.add_argument('--seed', type=int, default=0, help='data seed')
    parser.add_argument(
        '--det', choices=['retinanet', 'mask-rcnn'], default='retinanet')
    parser.add_argument('--seg', choices=['fpn', 'upernet'], default='fpn')
    parser.add_argument(
        '--parallel-threads',
        type=int,
        default=1,
        help='CPU threads of each of the two fine-tunings, '
        'side by side; 0: one after the other')
    args = parser.parse_args()
    if args.parallel_threads < 0:
        parser.error('--parallel-threads must be >= 0 (0: one fine-tuning '
                     f'after the other), got {args.parallel_threads}')
    out, start = args.out.resolve(), time.time()
    columns = (TextColumn('{task.description:<16}'), BarColumn(),
               TextColumn('{task.completed}/{task.total} it'),
               TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console) as progress:
            progress.add_task('synthetic data', total=1)
            run_step(
                Step('generating the synthetic demo data', [
                    'tools/misc/make_demo_data.py', '--out', args.data,
                    '--seed', args.seed
                ], out / 'data.log'))
            progress.update(progress.task_ids[0], completed=1)
            os.environ['SAEVIT_DEMO_DATA'] = str(args.data.resolve())
            results = fine_tune(['classification'], out, progress, None, 0)
            backbone = out / 'saevit-t_demo_backbone.pth'
            run_step(
                Step('converting the classification checkpoint', [
                    'tools/model_converters/cls_to_backbone.py',
                    results[0]['checkpoint'], backbone
                ], out / 'convert.log'))
            results += fine_tune((args.det, args.seg), out, progress, backbone,
                                 args.parallel_threads)
    except StepFailed as err:
        console.print('[bold red]The demo stopped.[/]')
        console.print(str(err), markup=False, highlight=False)
        sys.exit(1)
    table = Table(title='saevit_mm demo on synthetic data (SAEViT-T, CPU)')
    for name in ('task', 'config', 'metric', 'value', 'train', 'test'):
        table.add_column(name)
    for r in results:
        table.add_row(r['task'], r['config'], r['metric'], r['text'],
                      f"{r['train_s'] / 60:.1f} min", f"{r['test_s']:.0f} s")
    console.print(table)
    figure = save_demo_figure(out / 'demo.png', results)
    (out / 'results.json').write_text(
        json.dumps(
            dict(
                total_s=round(time.time() - start, 1),
                results=[{
                    k: v
                    for k, v in r.items() if k not in ('curve', 'images')
                } for r in results]),
            indent=2))
    console.print(f'picture: {figure}\nresults: {out / "results.json"}\n'
                  f'total time: {(time.time() - start) / 60:.1f} min')


if __name__ == '__main__':
    main()
