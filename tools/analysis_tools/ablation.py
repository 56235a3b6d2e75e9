"""Ablation and peer sweep on the synthetic demo data.

1. Classification: trains and tests every arm with the classification
   demo's recipe and budget (:data:`DEMO_CONFIG`: 5 epochs, 64 px), each
   config of ``configs/ablation/`` changing only the backbone (and what its
   channels force), for several seeds.
2. Dense: fine-tunes and tests the Semantic FPN demo
   (:data:`DEMO_DENSE_CONFIG`) from each seed's classifier of SAEViT-t, of
   the ablations that have a dense config (CIFFN -> plain FFN) and of the
   peer with the best mean top-1 (or ``--dense-peer``).
3. Measures every model's parameters, FLOPs and throughput in one process,
   interleaved (``benchmark.measure``: classifiers at batch 32 and 224²,
   segmenters at batch 1 and 512²; ``--smoke``: 64² and 128², one round).

Writes ``ablation.json``, ``ablation.md`` (the tables) and ``ablation.png``
(each task's metric against throughput and FLOPs). A finished run leaves
``result.json`` in its work directory (``<work-dir>/<arm>/seed<k>``,
``<work-dir>/fpn/<arm>/seed<k>``), which the next invocation reads instead
of training again, so an interrupted sweep resumes. ``--report`` rewrites
the ``.md`` and ``.png`` beside an existing ``ablation.json``.

Examples::

    python tools/analysis_tools/ablation.py                  # full sweep
    python tools/analysis_tools/ablation.py --arms SAEViT-t ResNet-18
    python tools/analysis_tools/ablation.py --smoke --seeds 0  # minutes
    python tools/analysis_tools/ablation.py --report docs/ablation/x.json
"""
import argparse
import json
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from benchmark import machine, measure

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tools'))  # demo_steps, next to the demo
from demo_steps import Step, run_lanes, run_step, train_test  # noqa: E402


@dataclass(frozen=True)
class Arm:
    """One arm of the sweep.

    Attributes:
        name: Display name.
        config: Classification config, relative to the repository.
        kind: ``'saevit'``, ``'ablation'`` or ``'peer'``.
        dense_config: Semantic FPN config of the same backbone, or None
            (an arm that is only trained for classification).
    """
    name: str
    config: str
    kind: str
    dense_config: Optional[str] = None

    @property
    def slug(self) -> str:
        return Path(self.config).stem.split('_')[0]


DEMO_CONFIG = 'configs/demo/saevit-t_1xb16-5e_demo-in1k-64px.py'
DEMO_DENSE_CONFIG = 'configs/demo/fpn_saevit-t_1xb4-800_demo-ade20k-128x128.py'
_CLS = '_1xb16-5e_demo-in1k-64px.py'
_DENSE = '_1xb4-800_demo-ade20k-128x128.py'
ARMS = (
    Arm('SAEViT-t', DEMO_CONFIG, 'saevit', DEMO_DENSE_CONFIG),
    Arm('SAA -> full attention', f'configs/ablation/saevit-t-mhsa{_CLS}',
        'ablation'),
    Arm('CIFFN -> plain FFN', f'configs/ablation/saevit-t-ffn{_CLS}',
        'ablation', f'configs/ablation/fpn_saevit-t-ffn{_DENSE}'),
    Arm('CIFFN without redistribution',
        f'configs/ablation/saevit-t-ciffn-noshuffle{_CLS}', 'ablation'),
    Arm('SAA recovery: no norm -> LN2d',
        f'configs/ablation/saevit-t-ln2drecovery{_CLS}', 'ablation'),
    Arm('no DWSConv', f'configs/ablation/saevit-t-nodws{_CLS}', 'ablation'),
    Arm('EdgeNeXt-xsmall', f'configs/ablation/edgenext-xsmall{_CLS}', 'peer',
        f'configs/ablation/fpn_edgenext-xsmall{_DENSE}'),
    Arm('MobileViT-x_small', f'configs/ablation/mobilevit-xsmall{_CLS}',
        'peer', f'configs/ablation/fpn_mobilevit-xsmall{_DENSE}'),
    Arm('ResNet-18', f'configs/ablation/resnet18{_CLS}', 'peer',
        f'configs/ablation/fpn_resnet18{_DENSE}'),
)

_NO_WORKERS = tuple(f'{loader}_dataloader.{key}'
                    for loader in ('train', 'val', 'test')
                    for key in ('num_workers=0', 'persistent_workers=False'))
#: ``--smoke``, classification: one epoch of 8 iterations (enough for the
#: quarter-epoch warm-up to span 2), to check that every arm runs.
SMOKE_OPTIONS = (
    'train_cfg.max_epochs=1',
    'default_hooks.checkpoint.interval=1',
    'train_dataloader.batch_size=4',
    'train_dataloader.dataset.indices=32',
    'test_dataloader.dataset.indices=16',
    'val_dataloader.dataset.indices=16',
) + _NO_WORKERS
#: ``--smoke``, dense: 4 iterations, tested on 8 images.
DENSE_SMOKE_OPTIONS = (
    'train_cfg.max_iters=4',
    'train_cfg.val_interval=4',
    'default_hooks.checkpoint.interval=4',
    'param_scheduler.0.end=4',
    'test_dataloader.dataset.indices=8',
    'val_dataloader.dataset.indices=8',
) + _NO_WORKERS
#: result key -> test metric, per task (classification, dense)
METRICS = {
    False: dict(top1='accuracy/top1', top5='accuracy/top5'),
    True: dict(miou='mIoU', macc='mAcc', aacc='aAcc'),
}


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


def choose_dense_arms(arms: Sequence[Arm],
                      top1_mean: Mapping[str, float],
                      peer: Optional[str] = None) -> List[Arm]:
    """The arms of ``arms`` fine-tuned for the dense task: SAEViT-t, the
    ablations with a dense config, and one peer: ``peer``, or the one with
    the best mean top-1 among ``arms`` (none when no peer was trained)."""
    ours = [
        a for a in arms if a.kind != 'peer' and a.dense_config is not None
    ]
    if peer is not None:
        chosen = [a for a in ARMS if a.name.lower() == peer.lower()]
        if not chosen or chosen[0].kind != 'peer':
            raise KeyError(f'--dense-peer {peer!r} is not a peer; peers: '
                           f'{[a.name for a in ARMS if a.kind == "peer"]}')
        return ours + chosen
    peers = [a for a in arms if a.kind == 'peer']
    return ours + [max(peers, key=lambda a: top1_mean[a.name])
                   ] if peers else ours


def run_one(arm: Arm,
            seed: int,
            work_dir: Path,
            data_root: Path,
            options: Sequence[str] = (),
            dense: bool = False) -> Dict[str, float]:
    """Train and test one arm with one seed, or read its finished result.

    With ``dense``, the arm's Semantic FPN, fine-tuned from its classifier
    of the same seed (trained first).

    Returns:
        The test metrics (%: ``top1``, ``top5``; dense: ``miou``, ``macc``,
        ``aacc`` and the classifier ``checkpoint``), ``train_s``,
        ``test_s`` and ``resumed`` (True when the result was read).
    """
    config = arm.dense_config if dense else arm.config
    if config is None:
        raise ValueError(f'{arm.name} has no dense config; arms with one: '
                         f'{[a.name for a in ARMS if a.dense_config]}')
    classifier = work_dir / arm.slug / f'seed{seed}'
    out = work_dir / 'fpn' / arm.slug / f'seed{seed}' if dense else classifier
    if (out / 'result.json').exists():
        result = json.loads((out / 'result.json').read_text())
        return dict(result, resumed=True)
    result, options = {}, [f'randomness.seed={seed}', *options]
    if dense:
        result['checkpoint'] = (classifier /
                                'last_checkpoint').read_text().strip()
        options.append(f'model.backbone.init_cfg.checkpoint='
                       f'{result["checkpoint"]}')
    name = f'{arm.name}{" Semantic FPN" if dense else ""} (seed {seed})'
    lane = train_test(name, config, out, options,
                      dict(SAEVIT_DEMO_DATA=str(data_root)))
    train, test, metrics = run_lanes(dict(run=lane))['run']
    result.update((k, float(metrics[m])) for k, m in METRICS[dense].items())
    result.update(train_s=train.seconds, test_s=test.seconds)
    (out / 'result.json').write_text(json.dumps(result, indent=2))
    return dict(result, resumed=False)


def run_sweep(arms: Sequence[Arm],
              seeds: Sequence[int],
              run: Callable[[Arm, int], Dict],
              log: Callable[[str], None] = print) -> Dict[str, Dict]:
    """``run(arm, seed)`` for every pair, in seed-major order (so a partial
    sweep has every arm's first seed before any second seed)."""
    results: Dict[str, Dict] = {arm.name: {} for arm in arms}
    for seed in seeds:
        for arm in arms:
            log(f'[ablation] {arm.name} seed {seed} ...')
            results[arm.name][seed] = run(arm, seed)
    return results


def build_model(config: str):
    """The model of ``config`` (relative to the repository), eval mode."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(str(REPO / config))
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    model.eval()
    return model


def summarize_seeds(runs: Mapping[int, Mapping[str, float]],
                    metric: str = 'top1') -> Dict[str, object]:
    """Mean, sample standard deviation and range of ``metric`` over seeds,
    with each seed's value and training time."""
    seeds = sorted(runs)
    values = [runs[s][metric] for s in seeds]
    return {
        'seeds': seeds,
        metric: values,
        f'{metric}_mean': statistics.mean(values),
        f'{metric}_std': statistics.stdev(values) if len(values) > 1 else 0.,
        f'{metric}_min': min(values),
        f'{metric}_max': max(values),
        'train_s': [runs[s]['train_s'] for s in seeds],
    }


def _versus(row: Mapping, ref: Optional[Mapping], metric: str) -> str:
    """Difference of means to ``ref`` and whether the seed ranges overlap
    (with this few seeds, disjoint ranges are the honest bar for "beyond
    the spread")."""
    if ref is None:
        return '-'
    if row is ref:
        return 'reference'
    delta = row[f'{metric}_mean'] - ref[f'{metric}_mean']
    apart = (
        row[f'{metric}_min'] > ref[f'{metric}_max']
        or row[f'{metric}_max'] < ref[f'{metric}_min'])
    return f'{delta:+.1f} ({"beyond" if apart else "within"} the spread)'


def _table(rows: Sequence[Mapping], metric: str, label: str,
           settings: Mapping) -> List[str]:
    ref = next((r for r in rows if r['kind'] == 'saevit'), None)
    size, batch = settings['img_size'], settings['batch_size']
    lines = [
        f'| arm | {label}: mean ± std | per seed | vs SAEViT-t | params (M) '
        f'| GFLOPs @ {size}² | img/s (batch {batch}, {size}²) |',
        '|---|---:|---|---|---:|---:|---:|'
    ]
    for row in rows:
        seeds = ', '.join(f'{v:.1f}' for v in row[metric])
        lines.append(
            f'| {row["name"]} | {row[metric + "_mean"]:.1f} ± '
            f'{row[metric + "_std"]:.1f} | {seeds} | '
            f'{_versus(row, ref, metric)} | {row["params_m"]:.2f} | '
            f'{row["gflops"]:.3f} | {row["throughput"]["median"]:.1f} |')
    return lines


def markdown(result: Mapping) -> str:
    """The tables, one per task, from an ``ablation.json``."""
    lines = [
        'Classification on the synthetic demo data (top-1 %; throughput '
        'measured in one process, interleaved, '
        f'{result["settings"]["threads"]} threads):', ''
    ]
    lines += _table(result['arms'], 'top1', 'top-1', result['settings'])
    dense = result.get('dense', {})
    if dense.get('arms'):
        lines += [
            '', 'Semantic FPN fine-tuned from each seed\'s classifier '
            f'(synthetic demo data, mIoU %; `{dense["task"]}`; segmenters '
            'timed whole):', ''
        ]
        lines += _table(dense['arms'], 'miou', 'mIoU', dense['settings'])
    lines += [
        '', f'`{result["command"]}`: {result["total_s"] / 60:.0f} min in its '
        f'last invocation, {result["runs_s"] / 60:.0f} min of training and '
        'testing over all runs.'
    ]
    if 'measured_by' in result:
        by = result['measured_by']
        lines += [
            '', 'Params, FLOPs and throughput measured with the current code '
            f'by `{by["command"]}` ({by["cpu"]}, {by["threads"]} threads, '
            f'torch {by["torch"]}).'
        ]
    return '\n'.join(lines) + '\n'


def plot(result: Mapping, path: Path) -> None:
    """One row per task: its metric (mean and seed range) against
    throughput and against FLOPs."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    tasks = [(result, 'top1', 'classification, top-1 %')]
    if result.get('dense', {}).get('arms'):
        tasks.append((result['dense'], 'miou', 'Semantic FPN, mIoU %'))
    fig, axes = plt.subplots(
        len(tasks), 2, figsize=(13, 5 * len(tasks)), squeeze=False)
    colors = dict(saevit='tab:red', ablation='tab:orange', peer='tab:blue')
    for row_axes, (part, metric, label) in zip(axes, tasks):
        s = part['settings']
        for row in part['arms']:
            y = row[f'{metric}_mean']
            yerr = [[y - row[f'{metric}_min']], [row[f'{metric}_max'] - y]]
            color = colors[row['kind']]
            for ax, x in zip(row_axes,
                             (row['throughput']['median'], row['gflops'])):
                ax.errorbar(x, y, yerr, fmt='o', color=color, capsize=3)
                ax.text(x, y, '  ' + row['name'], fontsize=8)
        row_axes[0].set_xlabel(f'img/s, batch {s["batch_size"]} @ '
                               f'{s["img_size"]}² ({s["threads"]} threads)')
        row_axes[1].set_xlabel(f'GFLOPs (multiply-adds) @ {s["img_size"]}²')
        for ax in row_axes:
            ax.set_ylabel(f'{label}, mean and range over '
                          f'{len(s["seeds"])} seeds')
            ax.set_title(f'Synthetic demo data: {label.split(",")[0]}')
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: Mapping, out: Path) -> None:
    """``ablation.md`` and ``ablation.png`` of ``result`` in ``out``."""
    (out / 'ablation.md').write_text(markdown(result))
    plot(result, out / 'ablation.png')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--arms', nargs='+', help='arm names (default all)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1])
    parser.add_argument(
        '--work-dir', type=Path, default=Path('work_dirs/ablation'))
    parser.add_argument(
        '--data',
        type=Path,
        default=Path('data/demo'),
        help='demo data root (generated there when missing)')
    parser.add_argument(
        '--smoke',
        action='store_true',
        help='one epoch on 32 images per classifier, 4 iterations per '
        'segmenter: checks that every arm runs')
    parser.add_argument(
        '--dense-peer',
        help='peer fine-tuned for segmentation beside SAEViT-t (default: '
        'the peer with the best mean top-1)')
    parser.add_argument(
        '--no-dense', action='store_true', help='skip the dense task')
    parser.add_argument('--threads', type=int, help='torch threads (timing)')
    parser.add_argument(
        '--no-progress', action='store_true', help='no progress lines')
    parser.add_argument(
        '--report',
        type=Path,
        metavar='JSON',
        help='only rewrite ablation.md and .png beside this ablation.json')
    parser.add_argument(
        '--remeasure',
        type=Path,
        metavar='JSON',
        help='measure params, FLOPs and throughput of the arms of this '
        'ablation.json again with the current code (same settings; the '
        'seed results are kept), then rewrite it with its .md and .png')
    args = parser.parse_args(argv)
    try:
        args.arm_list = select_arms(args.arms)
        if args.dense_peer:
            peer = choose_dense_arms(args.arm_list, {}, args.dense_peer)[-1]
            if peer not in args.arm_list:
                raise KeyError(f'--dense-peer {peer.name} starts from its '
                               'classifier: add it to --arms')
    except KeyError as err:
        parser.error(str(err.args[0]))
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f'--seeds must be distinct, got {args.seeds}')
    return args


def _measured(arms: Sequence[Arm], runs: Mapping[str, Dict], dense: bool,
              settings: Dict) -> List[Dict]:
    """One row per arm: the seed statistics and :func:`benchmark.measure`
    of its model."""
    import torch
    size = settings['img_size']
    configs = {a.name: a.dense_config if dense else a.config for a in arms}
    measured = measure({
        n: build_model(c)
        for n, c in configs.items()
    }, torch.randn(settings['batch_size'], 3, size, size), settings['repeats'])
    metric = next(iter(METRICS[dense]))
    return [
        dict(
            name=arm.name,
            config=configs[arm.name],
            kind=arm.kind,
            **summarize_seeds(runs[arm.name], metric),
            **measured[arm.name]) for arm in arms
    ]


def remeasure(result: Dict, threads: Optional[int], command: str) -> Dict:
    """``result`` with every arm's params, FLOPs and throughput measured
    again by :func:`benchmark.measure` with its recorded settings (the seed
    results stay); ``measured_by`` records the command and the machine."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    parts = [result] + ([result['dense']] if result.get('dense') else [])
    for part in parts:
        settings, rows = part['settings'], part['arms']
        size = settings['img_size']
        measured = measure({
            row['name']: build_model(row['config'])
            for row in rows
        }, torch.randn(settings['batch_size'], 3, size, size),
                           settings['repeats'])
        for row in rows:
            row.update(measured[row['name']])
        settings['threads'] = torch.get_num_threads()
    return dict(result, measured_by=dict(command=command, **machine()))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.report:
        write_report(json.loads(args.report.read_text()), args.report.parent)
        return
    if args.remeasure:
        result = remeasure(
            json.loads(args.remeasure.read_text()), args.threads,
            shlex.join(['python', 'tools/analysis_tools/ablation.py'] +
                       list(sys.argv[1:] if argv is None else argv)))
        args.remeasure.write_text(json.dumps(result, indent=2))
        write_report(result, args.remeasure.parent)
        print(markdown(result))
        return
    start = time.time()
    work_dir = args.work_dir.resolve()  # the runs start in the repository
    work_dir = work_dir / 'smoke' if args.smoke else work_dir
    data_root = args.data.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    if not (data_root / 'imagenet').is_dir():
        run_step(
            Step('generating the demo data',
                 ['tools/misc/make_demo_data.py', '--out', data_root],
                 work_dir / 'data.log'))
    log = (lambda line: None) if args.no_progress else print

    def sweep(arms: Sequence[Arm], dense: bool) -> Dict[str, Dict]:
        options = (DENSE_SMOKE_OPTIONS
                   if dense else SMOKE_OPTIONS) if args.smoke else ()
        return run_sweep(
            arms, args.seeds, lambda arm, seed: run_one(
                arm, seed, work_dir, data_root, options, dense), log)

    runs = sweep(args.arm_list, False)
    dense_arms = [] if args.no_dense else choose_dense_arms(
        args.arm_list, {
            name: summarize_seeds(r)['top1_mean']
            for name, r in runs.items()
        }, args.dense_peer)
    dense = sweep(dense_arms, True)
    sweep_s = time.time() - start
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = dict(
        seeds=list(args.seeds),
        repeats=1 if args.smoke else 5,
        threads=torch.get_num_threads())
    # classifiers at batch 32 and 224², segmenters at batch 1 and 512²
    cls_settings = dict(
        settings,
        img_size=64 if args.smoke else 224,
        batch_size=2 if args.smoke else 32)
    dense_settings = dict(
        settings, img_size=128 if args.smoke else 512, batch_size=1)
    every_run = [
        r for by_arm in (runs, dense) for by_seed in by_arm.values()
        for r in by_seed.values()
    ]
    result = dict(
        command=shlex.join(['python', 'tools/analysis_tools/ablation.py'] +
                           list(sys.argv[1:] if argv is None else argv)),
        settings=dict(cls_settings, smoke=args.smoke),
        # this invocation (a resumed sweep skips finished runs) and the
        # training + testing time of every run, wherever it was done
        sweep_s=round(sweep_s, 1),
        runs_s=round(sum(r['train_s'] + r['test_s'] for r in every_run), 1),
        arms=_measured(args.arm_list, runs, False, cls_settings))
    if dense_arms:
        result['dense'] = dict(
            task=DEMO_DENSE_CONFIG,
            peer_choice=args.dense_peer or 'best mean top-1 among the peers',
            settings=dense_settings,
            arms=_measured(dense_arms, dense, True, dense_settings))
    result['total_s'] = round(time.time() - start, 1)
    (work_dir / 'ablation.json').write_text(json.dumps(result, indent=2))
    write_report(result, work_dir)
    print(markdown(result))
    print(f'wrote ablation.json, .md and .png to {work_dir} '
          f'({result["total_s"] / 60:.1f} min; all runs '
          f'{result["runs_s"] / 60:.1f} min)')


if __name__ == '__main__':
    main()
