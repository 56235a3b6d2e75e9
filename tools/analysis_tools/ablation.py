"""Ablation and peer sweep on the demo classification data.

Trains and tests every arm with the classification demo's recipe and budget
(``configs/demo/saevit-t_1xb16-5e_demo-in1k-64px.py``: 5 epochs, 64 px),
each config of ``configs/ablation/`` changing only the backbone (and what
its channels force), for several seeds; then measures every arm's
parameters, FLOPs and throughput in one process, interleaved. Writes
``ablation.json`` and ``ablation.png`` (top-1, mean and range over seeds,
against throughput and FLOPs).

A finished run leaves ``<work-dir>/<arm>/seed<k>/result.json``; running the
command again skips those, so an interrupted sweep resumes where it stopped.

Examples::

    python tools/analysis_tools/ablation.py                  # full sweep
    python tools/analysis_tools/ablation.py --arms SAEViT-t ResNet-18
    python tools/analysis_tools/ablation.py --smoke --seeds 0  # minutes
"""
import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tools'))  # demo_steps, next to the demo

from demo_steps import (Step, last_checkpoint, read_test_metrics,  # noqa: E402
                        run_step)

__all__ = ['Arm', 'ARMS', 'select_arms', 'run_sweep', 'measure_arms']


@dataclass(frozen=True)
class Arm:
    """One arm of the sweep.

    Attributes:
        name: Display name.
        config: Config path relative to the repository.
        kind: ``'saevit'``, ``'ablation'`` or ``'peer'``.
    """
    name: str
    config: str
    kind: str

    @property
    def slug(self) -> str:
        return Path(self.config).stem.split('_')[0]


DEMO_CONFIG = 'configs/demo/saevit-t_1xb16-5e_demo-in1k-64px.py'
ARMS = (
    Arm('SAEViT-t', DEMO_CONFIG, 'saevit'),
    Arm('SAA -> full attention',
        'configs/ablation/saevit-t-mhsa_1xb16-5e_demo-in1k-64px.py',
        'ablation'),
    Arm('CIFFN -> plain FFN',
        'configs/ablation/saevit-t-ffn_1xb16-5e_demo-in1k-64px.py',
        'ablation'),
    Arm('no DWSConv',
        'configs/ablation/saevit-t-nodws_1xb16-5e_demo-in1k-64px.py',
        'ablation'),
    Arm('EdgeNeXt-xsmall',
        'configs/ablation/edgenext-xsmall_1xb16-5e_demo-in1k-64px.py',
        'peer'),
    Arm('MobileViT-x_small',
        'configs/ablation/mobilevit-xsmall_1xb16-5e_demo-in1k-64px.py',
        'peer'),
    Arm('ResNet-18', 'configs/ablation/resnet18_1xb16-5e_demo-in1k-64px.py',
        'peer'),
)

#: ``--smoke``: one epoch of 8 iterations (enough for the quarter-epoch
#: warm-up to span 2), to check that every arm runs.
SMOKE_OPTIONS = (
    'train_cfg.max_epochs=1',
    'default_hooks.checkpoint.interval=1',
    'train_dataloader.batch_size=4',
    'train_dataloader.dataset.indices=32',
    'test_dataloader.dataset.indices=16',
    'val_dataloader.dataset.indices=16',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False',
)


def select_arms(names: Optional[Sequence[str]]) -> List[Arm]:
    """The arms called ``names`` (case-insensitive), or all of them."""
    if not names:
        return list(ARMS)
    by_name = {arm.name.lower(): arm for arm in ARMS}
    unknown = [n for n in names if n.lower() not in by_name]
    if unknown:
        raise KeyError(f'unknown arm(s) {unknown}; known: '
                       f'{[arm.name for arm in ARMS]}')
    return [by_name[n.lower()] for n in names]


def run_one(arm: Arm, seed: int, work_dir: Path, data_root: Path,
            options: Sequence[str] = ()) -> Dict[str, float]:
    """Train and test one arm with one seed, or read its finished result.

    Returns:
        ``top1``, ``top5`` (%), ``train_s``, ``test_s`` and ``resumed``
        (True when the result was already there).
    """
    out = work_dir / arm.slug / f'seed{seed}'
    result_file = out / 'result.json'
    if result_file.exists():
        return dict(json.loads(result_file.read_text()), resumed=True)
    env = dict(SAEVIT_DEMO_DATA=str(data_root))
    cfg_options = ['--cfg-options', f'randomness.seed={seed}', *options]
    train = run_step(
        Step(f'training {arm.name} (seed {seed})',
             ['tools/train.py', arm.config, '--work-dir', out, *cfg_options],
             out / 'train.log', env=env))
    test = run_step(
        Step(f'testing {arm.name} (seed {seed})', [
            'tools/test.py', arm.config,
            last_checkpoint(out), '--work-dir', out, *cfg_options
        ], out / 'test.log', env=env))
    metrics = read_test_metrics(out)
    result = dict(
        top1=float(metrics['accuracy/top1']),
        top5=float(metrics['accuracy/top5']),
        train_s=train.seconds,
        test_s=test.seconds)
    result_file.write_text(json.dumps(result, indent=2))
    return dict(result, resumed=False)


def run_sweep(arms: Sequence[Arm],
              seeds: Sequence[int],
              work_dir: Path,
              data_root: Path,
              options: Sequence[str] = (),
              progress: Optional[object] = None) -> Dict[str, Dict]:
    """Every (arm, seed) run, in seed-major order (so a partial sweep has
    every arm's first seed before any second seed)."""
    results: Dict[str, Dict] = {arm.name: {} for arm in arms}
    total = len(arms) * len(seeds)
    task = progress.add_task('sweep', total=total) if progress else None
    for seed in seeds:
        for arm in arms:
            if progress:
                progress.update(task, description=f'{arm.name} seed {seed}')
            else:
                print(f'[ablation] {arm.name} seed {seed} ...', flush=True)
            results[arm.name][seed] = run_one(arm, seed, work_dir, data_root,
                                              options)
            if progress:
                progress.advance(task)
    return results


def build_arm_model(arm: Arm):
    """The arm's classifier, built from its config (eval mode)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(str(REPO / arm.config))
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    model.eval()
    return model


def measure_arms(arms: Sequence[Arm],
                 img_size: int = 224,
                 batch_size: int = 32,
                 repeats: int = 5,
                 threads: Optional[int] = None) -> Dict[str, Dict]:
    """Params, FLOPs (one counter for all) and throughput of every arm's
    classifier at ``img_size``, timed interleaved in this process."""
    import torch
    from benchmark_utils.timing import interleave, summarize, time_per_call

    from saevit_mm.models.utils import count_complexity
    if threads:
        torch.set_num_threads(threads)
    device = torch.device('cpu')
    x = torch.randn(batch_size, 3, img_size, img_size)
    models = {arm.name: build_arm_model(arm) for arm in arms}
    rows: Dict[str, Dict] = {}
    for name, model in models.items():
        counted = count_complexity(model, (3, img_size, img_size))
        rows[name] = dict(
            params_m=counted['params'] / 1e6, gflops=counted['flops'] / 1e9)

    def task(model):

        def run() -> float:
            with torch.no_grad():
                return batch_size / time_per_call(lambda: model(x), device, 1)

        return run

    timed = interleave({n: task(m) for n, m in models.items()}, repeats)
    for name, values in timed.items():
        rows[name]['throughput'] = summarize(values).to_dict()
    return rows


def summarize_arm(runs: Dict[int, Dict]) -> Dict[str, object]:
    """Mean, sample standard deviation and range of top-1 over seeds."""
    top1 = [runs[s]['top1'] for s in sorted(runs)]
    return dict(
        seeds=sorted(runs),
        top1=top1,
        top1_mean=statistics.mean(top1),
        top1_std=statistics.stdev(top1) if len(top1) > 1 else 0.0,
        top1_min=min(top1),
        top1_max=max(top1),
        train_s=[runs[s]['train_s'] for s in sorted(runs)])


def plot(result: Dict[str, object], path: Path) -> None:
    """Top-1 (mean, seed range) against throughput and against FLOPs."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    colors = dict(saevit='tab:red', ablation='tab:orange', peer='tab:blue')
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for arm in result['arms']:
        if 'throughput' not in arm:
            continue
        y = arm['top1_mean']
        yerr = [[y - arm['top1_min']], [arm['top1_max'] - y]]
        for ax, x in zip(axes,
                         (arm['throughput']['median'], arm['gflops'])):
            ax.errorbar(
                x, y, yerr=yerr, fmt='*' if arm['kind'] == 'saevit' else 'o',
                color=colors[arm['kind']], capsize=3,
                markersize=12 if arm['kind'] == 'saevit' else 7)
            ax.annotate(arm['name'], (x, y), textcoords='offset points',
                        xytext=(6, 4), fontsize=8)
    settings = result['settings']
    axes[0].set_xlabel(f'img/s, batch {settings["batch_size"]} @ '
                       f'{settings["img_size"]}² (CPU, '
                       f'{settings["threads"]} threads)')
    axes[1].set_xlabel(f'GFLOPs (multiply-adds) @ {settings["img_size"]}²')
    for ax in axes:
        ax.set_ylabel(f'demo top-1 (%), mean and range over '
                      f'{len(settings["seeds"])} seeds')
        ax.grid(alpha=0.3)
    axes[0].set_title('Demo classification: accuracy vs throughput')
    axes[1].set_title('Demo classification: accuracy vs FLOPs')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--arms', nargs='+', help='arm names (default all)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1])
    parser.add_argument(
        '--work-dir', type=Path, default=Path('work_dirs/ablation'))
    parser.add_argument(
        '--data', type=Path, default=Path('data/demo'),
        help='demo data root (generated there when missing)')
    parser.add_argument(
        '--smoke', action='store_true',
        help='one epoch on 32 images per arm: checks that every arm runs')
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, help='torch threads (timing)')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    try:
        args.arm_list = select_arms(args.arms)
    except KeyError as err:
        parser.error(str(err.args[0]))
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f'--seeds must be distinct, got {args.seeds}')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    start = time.time()
    work_dir = args.work_dir.resolve()  # the runs start in the repository
    if args.smoke:
        work_dir = work_dir / 'smoke'
    data_root = args.data.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    if not (data_root / 'imagenet').is_dir():
        run_step(Step('generating the demo data',
                      ['tools/misc/make_demo_data.py', '--out', data_root],
                      work_dir / 'data.log'))
    options = SMOKE_OPTIONS if args.smoke else ()
    if args.no_progress:
        runs = run_sweep(args.arm_list, args.seeds, work_dir, data_root,
                         options)
    else:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress,
                                   TextColumn, TimeElapsedColumn)
        with Progress(
                TextColumn('{task.description:<32}'), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn()) as progress:
            runs = run_sweep(args.arm_list, args.seeds, work_dir, data_root,
                             options, progress)
    sweep_s = time.time() - start
    import torch
    measured = measure_arms(args.arm_list, args.img_size, args.batch_size,
                            args.repeats, args.threads)
    arms = []
    for arm in args.arm_list:
        arms.append(
            dict(name=arm.name, config=arm.config, kind=arm.kind,
                 **summarize_arm(runs[arm.name]), **measured[arm.name]))
    result = dict(
        command=' '.join(['python', 'tools/analysis_tools/ablation.py'] +
                         list(sys.argv[1:] if argv is None else argv)),
        settings=dict(
            seeds=list(args.seeds), smoke=args.smoke, img_size=args.img_size,
            batch_size=args.batch_size, repeats=args.repeats,
            threads=torch.get_num_threads()),
        sweep_s=round(sweep_s, 1),
        total_s=round(time.time() - start, 1),
        arms=arms)
    (work_dir / 'ablation.json').write_text(json.dumps(result, indent=2))
    plot(result, work_dir / 'ablation.png')
    print(f'{"arm":<24} {"top-1 mean":>10} {"range":>14} {"GFLOPs":>7} '
          f'{"img/s":>7}')
    for arm in arms:
        print(f'{arm["name"]:<24} {arm["top1_mean"]:>10.1f} '
              f'{arm["top1_min"]:>6.1f}-{arm["top1_max"]:<6.1f} '
              f'{arm["gflops"]:>7.3f} {arm["throughput"]["median"]:>7.1f}')
    print(f'wrote {work_dir / "ablation.json"} and {work_dir / "ablation.png"}'
          f' ({result["total_s"] / 60:.1f} min)')


if __name__ == '__main__':
    main()
