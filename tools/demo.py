"""The end-to-end demo: three hosts, one backbone, standard tools only.

    python tools/demo.py [--out work_dirs/demo] [--det retinanet]

1. generate the demo data (ImageNet, COCO and ADE20K layouts);
2. train and test SAEViT-T on the ImageNet-layout data (mmpretrain);
3. convert its checkpoint into a backbone-only, tensors-only file;
4. fine-tune and test a detector from that backbone (mmdet);
5. fine-tune and test a Semantic FPN segmenter from it (mmseg), side by
   side with step 4: each fine-tuning gets one CPU thread
   (``--parallel-threads``), which on a small CPU does more work per second
   than two runs one after the other with all threads each;
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
                        read_test_metrics, run_lanes, run_step, train_losses)

DEMO_CONFIGS = REPO / 'configs' / 'demo'
#: task -> (config, metric key, metric name)
TASKS = {
    'classification': ('saevit-t_1xb16-5e_demo-in1k-64px.py',
                       'accuracy/top1', 'top-1 acc. (%)'),
    'retinanet': ('retinanet_saevit-t_fpn_1xb2-4e_demo-coco.py',
                  'coco/bbox_mAP', 'bbox mAP'),
    'mask-rcnn': ('mask-rcnn_saevit-t_fpn_1xb2-4e_demo-coco.py',
                  'coco/bbox_mAP', 'bbox mAP'),
    'fpn': ('fpn_saevit-t_1xb4-800_demo-ade20k-128x128.py', 'mIoU',
            'mIoU (%)'),
    'upernet': ('upernet_saevit-t_1xb4-400_demo-ade20k-128x128.py', 'mIoU',
                'mIoU (%)'),
}

console = Console()


def train_and_test(task: str,
                   out: Path,
                   progress: Progress,
                   backbone: Optional[Path] = None,
                   env: Optional[Dict[str, str]] = None,
                   options: Sequence[str] = ()) -> Lane:
    """The steps of one task: train, then test; returns its result.

    A lane for :func:`run_lanes`: the config is read here, in the thread that
    runs all lanes, never in two threads at once.
    """
    config, metric, metric_name = TASKS[task]
    config_path = DEMO_CONFIGS / config
    # epoch-based runs log iterations per epoch; the total needs the epochs
    max_epochs = Config.fromfile(config_path).train_cfg.get('max_epochs')
    work_dir = out / task
    train_options = list(options)
    if backbone is not None:
        train_options.append(f'model.backbone.init_cfg.checkpoint={backbone}')
    bar = progress.add_task(f'train {task}', total=None)
    train = yield Step(
        f'training {task}',
        ['tools/train.py', config_path, '--work-dir', work_dir,
         *(['--cfg-options', *train_options] if train_options else [])],
        work_dir / 'train.log',
        env=env or {},
        on_progress=lambda done, total: progress.update(
            bar, completed=done, total=total),
        max_epochs=max_epochs)
    progress.update(bar, completed=1, total=1)
    checkpoint = last_checkpoint(work_dir)
    bar = progress.add_task(f'test {task}', total=None)
    test = yield Step(
        f'testing {task}',
        ['tools/test.py', config_path, checkpoint, '--work-dir', work_dir,
         '--show-dir', 'painted',
         *(['--cfg-options', *options] if options else [])],
        work_dir / 'test.log',
        env=env or {})
    progress.update(bar, completed=1, total=1)
    metrics = read_test_metrics(work_dir)
    if metric not in metrics:
        raise RuntimeError(f'{task}: metric {metric!r} missing from the test '
                           f'results {sorted(metrics)}; log: {test.log}')
    value = float(metrics[metric])
    coco = metric.startswith('coco/')
    if coco:
        value *= 100  # CocoMetric reports fractions
        metric_name = metric_name + ' (%)'
    text = f'{value:.1f}'
    if coco and f'{metric}_50' in metrics:  # the looser IoU 0.5 threshold
        text += f' (mAP50 {100 * float(metrics[metric + "_50"]):.1f})'
    return dict(
        task=task, config=config, metric=metric_name, value=value, text=text,
        checkpoint=checkpoint, train_s=train.seconds, test_s=test.seconds,
        curve=train_losses(work_dir),
        images=painted_images(work_dir, count=3))


def fine_tune(tasks: Sequence[str],
              out: Path,
              progress: Progress,
              backbone: Optional[Path],
              parallel_threads: int,
              options: Optional[Mapping[str, Sequence[str]]] = None
              ) -> List[Dict]:
    """Fine-tune and test ``tasks`` from ``backbone``: side by side, each
    with ``parallel_threads`` CPU threads, or (0) one after the other.

    ``options`` maps a task to extra ``--cfg-options`` of its runs.
    """
    options = options or {}

    def lane(task: str, env: Optional[Dict[str, str]] = None) -> Lane:
        return train_and_test(task, out, progress, backbone, env,
                              options.get(task, ()))

    if parallel_threads > 0:
        threads = str(parallel_threads)
        env = dict(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        results = run_lanes({task: lane(task, env) for task in tasks})
        return [results[task] for task in tasks]
    return [run_lanes({task: lane(task)})[task] for task in tasks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, default=Path('work_dirs/demo'),
                        help='where logs, checkpoints and the picture go')
    parser.add_argument('--data', type=Path, default=Path('data/demo'),
                        help='where the demo data is generated')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the demo data')
    parser.add_argument('--det', choices=['retinanet', 'mask-rcnn'],
                        default='retinanet', help='detector to fine-tune')
    parser.add_argument('--seg', choices=['fpn', 'upernet'], default='fpn',
                        help='segmenter to fine-tune')
    parser.add_argument(
        '--parallel-threads', type=int, default=1,
        help='CPU threads of each of the two fine-tunings, which run side '
        'by side; 0 runs them one after the other with all threads')
    args = parser.parse_args()
    if args.parallel_threads < 0:
        parser.error('--parallel-threads must be >= 0 (0: one fine-tuning '
                     f'after the other), got {args.parallel_threads}')
    out = args.out.resolve()
    start = time.time()
    columns = (TextColumn('{task.description:<24}'), BarColumn(),
               TextColumn('{task.completed}/{task.total} it'),
               TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task('demo data', total=None)
            run_step(Step('generating the demo data', [
                'tools/misc/make_demo_data.py', '--out', args.data, '--seed',
                args.seed
            ], out / 'data.log'))
            progress.update(bar, completed=1, total=1)
            os.environ['SAEVIT_DEMO_DATA'] = str(args.data.resolve())

            results = list(
                run_lanes({
                    'classification':
                    train_and_test('classification', out, progress)
                }).values())
            backbone = out / 'saevit-t_demo_backbone.pth'
            run_step(Step('converting the classification checkpoint', [
                'tools/model_converters/cls_to_backbone.py',
                results[0]['checkpoint'], backbone
            ], out / 'convert.log'))
            results += fine_tune((args.det, args.seg), out, progress,
                                 backbone, args.parallel_threads)
    except StepFailed as err:
        console.print('[bold red]The demo stopped.[/]')
        console.print(str(err), markup=False, highlight=False)
        sys.exit(1)

    table = Table(title='saevit_mm demo results (SAEViT-T, demo data, CPU)')
    for name in ('task', 'config', 'metric', 'value', 'train', 'test'):
        table.add_column(name, justify='right' if name in (
            'value', 'train', 'test') else 'left')
    for r in results:
        table.add_row(r['task'], r['config'], r['metric'], r['text'],
                      f"{r['train_s'] / 60:.1f} min",
                      f"{r['test_s']:.0f} s")
    console.print(table)
    figure = save_demo_figure(
        out / 'demo.png',
        curves={r['task']: r['curve'] for r in results},
        images={r['task']: r['images'] for r in results},
        titles={r['task']: f"{r['task']}: {r['metric']} {r['text']}"
                for r in results})
    total = time.time() - start
    summary = out / 'results.json'
    summary.write_text(
        json.dumps(
            dict(
                total_s=round(total, 1),
                results=[{
                    k: str(v) if isinstance(v, Path) else v
                    for k, v in r.items() if k not in ('curve', 'images')
                } for r in results]),
            indent=2))
    console.print(f'picture: {figure}')
    console.print(f'results: {summary}')
    console.print(f'total time: {total / 60:.1f} min')


if __name__ == '__main__':
    main()
