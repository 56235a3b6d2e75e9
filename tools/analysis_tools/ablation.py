"""Ablation and peer sweep on the demo data.

1. Classification: trains and tests every arm with the classification demo's
   recipe and budget (``configs/demo/saevit-t_1xb16-5e_demo-in1k-64px.py``:
   5 epochs, 64 px), each config of ``configs/ablation/`` changing only the
   backbone (and what its channels force), for several seeds.
2. Dense: fine-tunes and tests the Semantic FPN demo
   (``configs/demo/fpn_saevit-t_1xb4-800_demo-ade20k-128x128.py``: 800
   iterations, 128 px crops) from each seed's classifier of SAEViT-t and of
   the peer with the best mean top-1 (or ``--dense-peer``); the peers'
   configs change only the backbone and the neck's input widths.
3. Measures every model's parameters, FLOPs and throughput in one process,
   interleaved (classifiers at 224², segmenters at 512²).

Writes ``ablation.json``, ``ablation.png`` (each task's metric, mean and
range over seeds, against throughput and FLOPs) and ``ablation.md`` (the
tables, as the README shows them). A finished run leaves a
``result.json`` in its work directory (``<work-dir>/<arm>/seed<k>``,
``<work-dir>/fpn/<arm>/seed<k>``); running the command again skips those, so
an interrupted sweep resumes where it stopped.

Examples::

    python tools/analysis_tools/ablation.py                  # full sweep
    python tools/analysis_tools/ablation.py --arms SAEViT-t ResNet-18
    python tools/analysis_tools/ablation.py --smoke --seeds 0  # minutes
"""
import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tools'))  # demo_steps, next to the demo

from ablation_report import (markdown, plot, summarize_seeds,  # noqa: E402
                             table_lines)
from demo_steps import (Step, last_checkpoint, read_test_metrics,  # noqa: E402
                        run_step)

__all__ = [
    'Arm', 'ARMS', 'select_arms', 'choose_dense_arms', 'run_one', 'markdown',
    'plot', 'summarize_seeds',
    'run_dense_one', 'run_sweep', 'measure_configs'
]


@dataclass(frozen=True)
class Arm:
    """One arm of the sweep.

    Attributes:
        name: Display name.
        config: Classification config, relative to the repository.
        kind: ``'saevit'``, ``'ablation'`` or ``'peer'``.
        dense_config: Semantic FPN config of the same backbone, or None
            (the ablations: the dense task compares SAEViT-t with a peer).
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
_DENSE_SUFFIX = '_1xb4-800_demo-ade20k-128x128.py'
ARMS = (
    Arm('SAEViT-t', DEMO_CONFIG, 'saevit', DEMO_DENSE_CONFIG),
    Arm('SAA -> full attention',
        'configs/ablation/saevit-t-mhsa_1xb16-5e_demo-in1k-64px.py',
        'ablation'),
    Arm('CIFFN -> plain FFN',
        'configs/ablation/saevit-t-ffn_1xb16-5e_demo-in1k-64px.py',
        'ablation'),
    Arm('CIFFN without redistribution',
        'configs/ablation/saevit-t-ciffn-noshuffle_1xb16-5e_demo-in1k-64px.py',
        'ablation'),
    Arm('SAA recovery norm LN2d -> BN',
        'configs/ablation/saevit-t-bnrecovery_1xb16-5e_demo-in1k-64px.py',
        'ablation'),
    Arm('no DWSConv',
        'configs/ablation/saevit-t-nodws_1xb16-5e_demo-in1k-64px.py',
        'ablation'),
    Arm('EdgeNeXt-xsmall',
        'configs/ablation/edgenext-xsmall_1xb16-5e_demo-in1k-64px.py', 'peer',
        f'configs/ablation/fpn_edgenext-xsmall{_DENSE_SUFFIX}'),
    Arm('MobileViT-x_small',
        'configs/ablation/mobilevit-xsmall_1xb16-5e_demo-in1k-64px.py', 'peer',
        f'configs/ablation/fpn_mobilevit-xsmall{_DENSE_SUFFIX}'),
    Arm('ResNet-18', 'configs/ablation/resnet18_1xb16-5e_demo-in1k-64px.py',
        'peer', f'configs/ablation/fpn_resnet18{_DENSE_SUFFIX}'),
)

_NO_WORKERS = tuple(
    f'{loader}_dataloader.{key}'
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
    """SAEViT-t and one peer: ``peer``, or the one with the best mean top-1
    among ``arms`` (none when no peer was trained)."""
    saevit = [a for a in arms if a.kind == 'saevit']
    if peer is not None:
        chosen = [a for a in ARMS if a.name.lower() == peer.lower()]
        if not chosen or chosen[0].kind != 'peer':
            raise KeyError(f'--dense-peer {peer!r} is not a peer; peers: '
                           f'{[a.name for a in ARMS if a.kind == "peer"]}')
        return saevit + chosen
    peers = [a for a in arms if a.kind == 'peer']
    if not peers:
        return saevit
    return saevit + [max(peers, key=lambda a: top1_mean[a.name])]


def _cached(result_file: Path, compute: Callable[[], Dict]) -> Dict:
    """``result_file``'s result if it exists, else ``compute()``'s, saved
    there; ``resumed`` says which."""
    if result_file.exists():
        return dict(json.loads(result_file.read_text()), resumed=True)
    result = compute()
    result_file.write_text(json.dumps(result, indent=2))
    return dict(result, resumed=False)


def _train_and_test(name: str, config: str, out: Path, seed: int,
                    data_root: Path, options: Sequence[str]) -> Dict:
    """``tools/train.py`` then ``tools/test.py`` on the last checkpoint;
    the test metrics and both steps' seconds."""
    env = dict(SAEVIT_DEMO_DATA=str(data_root))
    cfg_options = ['--cfg-options', f'randomness.seed={seed}', *options]
    train = run_step(
        Step(f'training {name} (seed {seed})',
             ['tools/train.py', config, '--work-dir', out, *cfg_options],
             out / 'train.log', env=env))
    test = run_step(
        Step(f'testing {name} (seed {seed})', [
            'tools/test.py', config,
            last_checkpoint(out), '--work-dir', out, *cfg_options
        ], out / 'test.log', env=env))
    return dict(
        metrics=read_test_metrics(out),
        train_s=train.seconds,
        test_s=test.seconds)


def run_one(arm: Arm, seed: int, work_dir: Path, data_root: Path,
            options: Sequence[str] = ()) -> Dict[str, float]:
    """Train and test one arm's classifier with one seed, or read its
    finished result.

    Returns:
        ``top1``, ``top5`` (%), ``train_s``, ``test_s`` and ``resumed``
        (True when the result was already there).
    """
    out = work_dir / arm.slug / f'seed{seed}'

    def compute() -> Dict:
        run = _train_and_test(arm.name, arm.config, out, seed, data_root,
                              options)
        return dict(
            top1=float(run['metrics']['accuracy/top1']),
            top5=float(run['metrics']['accuracy/top5']),
            train_s=run['train_s'],
            test_s=run['test_s'])

    return _cached(out / 'result.json', compute)


def run_dense_one(arm: Arm, seed: int, work_dir: Path, data_root: Path,
                  options: Sequence[str] = ()) -> Dict[str, float]:
    """Fine-tune and test the arm's Semantic FPN from its classifier of the
    same seed (trained by :func:`run_one`), or read the finished result.

    Returns:
        ``miou``, ``macc``, ``aacc`` (%), ``train_s``, ``test_s``,
        ``checkpoint`` (the classifier it started from) and ``resumed``.
    """
    if arm.dense_config is None:
        raise ValueError(f'{arm.name} has no dense config; arms with one: '
                         f'{[a.name for a in ARMS if a.dense_config]}')
    out = work_dir / 'fpn' / arm.slug / f'seed{seed}'

    def compute() -> Dict:
        classifier = last_checkpoint(work_dir / arm.slug / f'seed{seed}')
        run = _train_and_test(
            f'{arm.name} Semantic FPN', arm.dense_config, out, seed,
            data_root,
            [*options, f'model.backbone.init_cfg.checkpoint={classifier}'])
        metrics = run['metrics']
        return dict(
            miou=float(metrics['mIoU']),
            macc=float(metrics['mAcc']),
            aacc=float(metrics['aAcc']),
            train_s=run['train_s'],
            test_s=run['test_s'],
            checkpoint=str(classifier))

    return _cached(out / 'result.json', compute)


def run_sweep(arms: Sequence[Arm],
              seeds: Sequence[int],
              run: Callable[[Arm, int], Dict],
              what: str = '',
              progress: Optional[object] = None) -> Dict[str, Dict]:
    """``run(arm, seed)`` for every pair, in seed-major order (so a partial
    sweep has every arm's first seed before any second seed)."""
    results: Dict[str, Dict] = {arm.name: {} for arm in arms}
    task = progress.add_task(what, total=len(arms) * len(seeds)) \
        if progress else None
    for seed in seeds:
        for arm in arms:
            label = f'{what} {arm.name} seed {seed}'.strip()
            if progress:
                progress.update(task, description=label)
            else:
                print(f'[ablation] {label} ...', flush=True)
            results[arm.name][seed] = run(arm, seed)
            if progress:
                progress.advance(task)
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


def build_arm_model(arm: Arm):
    """The arm's classifier, built from its config (eval mode)."""
    return build_model(arm.config)


def measure_configs(configs: Mapping[str, str],
                    img_size: int = 224,
                    batch_size: int = 32,
                    repeats: int = 5) -> Dict[str, Dict]:
    """Params, FLOPs (one counter for all) and throughput of each config's
    model (``model(x)``: logits of a classifier, a segmenter's
    per-pixel logits) at ``img_size``, timed interleaved in this process."""
    import torch
    from benchmark_utils.timing import interleave, summarize, time_per_call

    from saevit_mm.models.utils import count_complexity
    device = torch.device('cpu')
    x = torch.randn(batch_size, 3, img_size, img_size)
    models = {name: build_model(config) for name, config in configs.items()}
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
        help='one epoch on 32 images per classifier, 4 iterations per '
        'segmenter: checks that every arm runs')
    parser.add_argument(
        '--dense-peer',
        help='peer fine-tuned for segmentation beside SAEViT-t (default: '
        'the peer with the best mean top-1)')
    parser.add_argument(
        '--no-dense', action='store_true', help='skip the dense task')
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument(
        '--dense-img-size', type=int, default=512,
        help='input size at which the segmenters are timed')
    parser.add_argument('--dense-batch-size', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, help='torch threads (timing)')
    parser.add_argument('--no-progress', action='store_true')
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


def _rows(arms: Sequence[Arm], runs: Mapping[str, Dict], metric: str,
          measured: Mapping[str, Dict], config_key: str) -> List[Dict]:
    return [
        dict(name=arm.name, config=getattr(arm, config_key), kind=arm.kind,
             **summarize_seeds(runs[arm.name], metric), **measured[arm.name])
        for arm in arms
    ]


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
    dense_options = DENSE_SMOKE_OPTIONS if args.smoke else ()

    def sweeps(progress=None):
        runs = run_sweep(
            args.arm_list, args.seeds,
            lambda arm, seed: run_one(arm, seed, work_dir, data_root,
                                      options), 'classification', progress)
        if args.no_dense:
            return runs, [], {}
        top1 = {
            name: summarize_seeds(by_seed)['top1_mean']
            for name, by_seed in runs.items()
        }
        dense_arms = choose_dense_arms(args.arm_list, top1, args.dense_peer)
        dense = run_sweep(
            dense_arms, args.seeds,
            lambda arm, seed: run_dense_one(arm, seed, work_dir, data_root,
                                            dense_options), 'Semantic FPN',
            progress)
        return runs, dense_arms, dense

    if args.no_progress:
        runs, dense_arms, dense = sweeps()
    else:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress,
                                   TextColumn, TimeElapsedColumn)
        with Progress(
                TextColumn('{task.description:<44}'), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn()) as progress:
            runs, dense_arms, dense = sweeps(progress)
    sweep_s = time.time() - start
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    measured = measure_configs({a.name: a.config for a in args.arm_list},
                               args.img_size, args.batch_size, args.repeats)
    arms = _rows(args.arm_list, runs, 'top1', measured, 'config')
    dense_measured = measure_configs(
        {a.name: a.dense_config for a in dense_arms}, args.dense_img_size,
        args.dense_batch_size, args.repeats) if dense_arms else {}
    dense_rows = _rows(dense_arms, dense, 'miou', dense_measured,
                       'dense_config')
    every_run = [r for by_arm in (runs, dense) for by_seed in by_arm.values()
                 for r in by_seed.values()]
    result = dict(
        command=' '.join(['python', 'tools/analysis_tools/ablation.py'] +
                         list(sys.argv[1:] if argv is None else argv)),
        settings=dict(
            seeds=list(args.seeds), smoke=args.smoke, img_size=args.img_size,
            batch_size=args.batch_size, repeats=args.repeats,
            threads=threads),
        # this invocation (a resumed sweep skips finished runs) and the
        # training + testing time of every run, wherever it was done
        sweep_s=round(sweep_s, 1),
        runs_s=round(sum(r['train_s'] + r['test_s'] for r in every_run), 1),
        arms=arms)
    if dense_rows:
        result['dense'] = dict(
            task=DEMO_DENSE_CONFIG,
            peer_choice=args.dense_peer or 'best mean top-1 among the peers',
            settings=dict(
                seeds=list(args.seeds), img_size=args.dense_img_size,
                batch_size=args.dense_batch_size, repeats=args.repeats,
                threads=threads),
            arms=dense_rows)
    result['total_s'] = round(time.time() - start, 1)
    (work_dir / 'ablation.json').write_text(json.dumps(result, indent=2))
    plot(result, work_dir / 'ablation.png')
    (work_dir / 'ablation.md').write_text(markdown(result))
    print('\n'.join(table_lines(arms, 'top1', 'top-1 mean')))
    if dense_rows:
        print('\n'.join(table_lines(dense_rows, 'miou', 'mIoU mean')))
    print(f'wrote ablation.json, .png and .md to {work_dir} '
          f'({result["total_s"] / 60:.1f} min; all runs '
          f'{result["runs_s"] / 60:.1f} min)')


if __name__ == '__main__':
    main()
