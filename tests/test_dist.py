"""CPU distributed set-up (saevit_mm.engine.dist) and tools/dist_train.sh.

Besides the set-up and its logs, what DDP computes: two gloo processes of
``tools/dist_train.sh`` end with the same weights, and with the weights of
one process trained on the concatenated batches (norms in eval mode); the
same checks catch a mutant whose ranks do not all-reduce their gradients
(``ddp_probe_hook.py``).
"""
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Mapping

import pytest
import torch
from ddp_probe_hook import MUTANT_MESSAGE, load_probe
from e2e_utils import (DEMO_CONFIGS, REPO, TINY_OPTIONS, demo_data_root,
                       run_dist_train, run_tool)
from mmengine.config import Config
from test_models.test_backbones.utils import TINY_ARCH

from saevit_mm.engine.dist import (close_distributed, launcher_env,
                                   revert_sync_bn_cfg, setup_distributed)

TORCHRUN_ENV = dict(
    RANK='1',
    LOCAL_RANK='1',
    WORLD_SIZE='2',
    MASTER_ADDR='10.0.0.1',
    MASTER_PORT='29501')


def test_launcher_env_pytorch_reads_torchrun_variables():
    env = launcher_env('pytorch', TORCHRUN_ENV)
    assert env == TORCHRUN_ENV


def test_launcher_env_slurm_maps_slurm_variables():
    env = launcher_env(
        'slurm',
        dict(
            SLURM_PROCID='3',
            SLURM_NTASKS='4',
            SLURM_LOCALID='1',
            SLURM_NODELIST='node[1-2]',
            MASTER_ADDR='node1'))
    assert env == dict(
        RANK='3',
        WORLD_SIZE='4',
        LOCAL_RANK='1',
        MASTER_ADDR='node1',
        MASTER_PORT='29500')


def test_launcher_env_mpi_maps_open_mpi_variables():
    env = launcher_env(
        'mpi',
        dict(
            OMPI_COMM_WORLD_RANK='2',
            OMPI_COMM_WORLD_SIZE='4',
            OMPI_COMM_WORLD_LOCAL_RANK='0',
            MASTER_ADDR='host',
            MASTER_PORT='1234'))
    assert env == dict(
        RANK='2',
        WORLD_SIZE='4',
        LOCAL_RANK='0',
        MASTER_ADDR='host',
        MASTER_PORT='1234')


@pytest.mark.parametrize('launcher', ['pytorch', 'slurm', 'mpi'])
def test_launcher_env_names_missing_variables(launcher):
    with pytest.raises(KeyError, match=f'--launcher {launcher} needs'):
        launcher_env(launcher, {})


def test_launcher_env_rejects_unknown_launcher():
    with pytest.raises(ValueError, match='allowed are'):
        launcher_env('none', TORCHRUN_ENV)


def test_revert_sync_bn_cfg_keeps_other_keys():
    model = dict(
        backbone=dict(norm_cfg=dict(type='SyncBN', requires_grad=True)),
        heads=[
            dict(norm_cfg=dict(type='MMSyncBN', eps=1e-3)),
            dict(norm_cfg=dict(type='GN', num_groups=4))
        ])
    assert revert_sync_bn_cfg(model) == 2
    assert model['backbone']['norm_cfg'] == dict(type='BN', requires_grad=True)
    assert model['heads'][0]['norm_cfg'] == dict(type='BN', eps=1e-3)
    assert model['heads'][1]['norm_cfg']['type'] == 'GN'
    assert revert_sync_bn_cfg(model) == 0


def test_setup_distributed_is_a_no_op_without_launcher():
    cfg = Config(dict(model=dict(norm_cfg=dict(type='SyncBN'))))
    assert setup_distributed(cfg, 'none') is False
    assert cfg.model.norm_cfg.type == 'SyncBN'
    assert 'model_wrapper_cfg' not in cfg


def test_setup_distributed_rejects_unknown_launcher():
    with pytest.raises(ValueError, match='allowed are'):
        setup_distributed(Config(dict(model=dict())), 'torchrun')


# Runs a tool as its own __main__, then reports whether a process group is
# still initialised when the tool's main() has returned.
RUN_AND_REPORT = '''
import runpy, sys
import torch.distributed as dist
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
print('process group left:', dist.is_available() and dist.is_initialized())
'''


def test_close_distributed_is_a_no_op_without_process_group():
    close_distributed()


@pytest.mark.slow
def test_train_and_test_tools_destroy_their_process_group(
        tmp_path_factory, tmp_path):
    """tools/train.py and tools/test.py with --launcher pytorch end their
    process group after a finished run: a gloo group left to the interpreter's
    shutdown may abort the process after a successful run (SIGABRT,
    "terminate called without an active exception")."""
    data_root = demo_data_root(tmp_path_factory)
    work_dir = tmp_path / 'work'
    config = DEMO_CONFIGS['cls']
    env = dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
               MASTER_ADDR='127.0.0.1', MASTER_PORT='29531')
    train = run_tool([
        '-c', RUN_AND_REPORT, 'tools/train.py', config, '--launcher',
        'pytorch', '--work-dir', work_dir, '--cfg-options',
        *TINY_OPTIONS['cls']
    ],
                     data_root=data_root,
                     env_extra=env)
    assert 'CPU distributed run: backend=gloo, rank 0/1' in train.stdout
    assert 'process group left: False' in train.stdout, train.stdout[-2000:]
    test = run_tool([
        '-c', RUN_AND_REPORT, 'tools/test.py', config, work_dir /
        'epoch_2.pth', '--launcher', 'pytorch', '--work-dir', work_dir,
        '--cfg-options', *TINY_OPTIONS['cls']
    ],
                    data_root=data_root,
                    env_extra=env)
    assert 'process group left: False' in test.stdout, test.stdout[-2000:]


@pytest.mark.slow
def test_dist_train_two_cpu_processes(tmp_path_factory, tmp_path):
    """tools/dist_train.sh CONFIG 2 on CPU: gloo, SyncBN reverted, DDP."""
    data_root = demo_data_root(tmp_path_factory)
    work_dir = tmp_path / 'work'
    # SyncBN everywhere, as in the real configs: must be reverted on CPU.
    options = TINY_OPTIONS['seg'] + [
        'model.backbone.norm_cfg.type=SyncBN',
        'model.decode_head.norm_cfg.type=SyncBN',
        'randomness.seed=0',
    ]
    proc = run_tool([
        'bash', 'tools/dist_train.sh', DEMO_CONFIGS['fpn'], '2', '--work-dir',
        work_dir, '--cfg-options', *options
    ],
                    data_root=data_root,
                    python=False,
                    timeout=900,
                    env_extra=dict(PYTHON=sys.executable, PORT='29511'))
    ranks = set(
        re.findall(r'CPU distributed run: backend=gloo, rank (\d)/2',
                   proc.stdout))
    assert ranks == {'0', '1'}, proc.stdout[-3000:]
    assert (work_dir / 'iter_2.pth').exists()
    assert re.search(r'Iter\(train\) \[2/2\]', proc.stdout)


@pytest.mark.slow
@pytest.mark.seg
def test_dist_train_with_unused_stages_needs_no_find_unused_parameters(
        tmp_path_factory, tmp_path):
    """Semantic FPN on the first two of SAEViT's four stages, under DDP
    without find_unused_parameters: the stages after the last output do not
    run and are frozen, so DDP waits for no gradient they cannot get (it
    stops the second iteration otherwise)."""
    data_root = demo_data_root(tmp_path_factory)
    work_dir = tmp_path / 'work'
    config = DEMO_CONFIGS['fpn']
    cfg = Config.fromfile(config)
    assert 'find_unused_parameters' not in cfg
    assert len(cfg.model.neck.in_channels) == 4
    widths = ','.join(map(str, cfg.model.neck.in_channels[:2]))
    options = TINY_OPTIONS['seg'] + [
        'model.backbone.out_indices=(0,1)',
        # the neck takes the widths of stages 0 and 1 and still gives the
        # head its four levels (the last two by max pooling)
        f'model.neck.in_channels=[{widths}]',
        'randomness.seed=0',
        # the steps are what is checked: no validation
        'train_cfg.val_interval=100',
    ]
    proc = run_dist_train(
        config, 2, work_dir, options, data_root=data_root, timeout=600)
    ranks = set(
        re.findall(r'CPU distributed run: backend=gloo, rank (\d)/2',
                   proc.stdout))
    assert ranks == {'0', '1'}, proc.stdout[-3000:]
    dumped = Config.fromfile(work_dir / config.name)
    assert dumped.model.backbone.out_indices == (0, 1)
    assert dumped.model_wrapper_cfg.find_unused_parameters is False
    assert re.search(r'Iter\(train\) \[2/2\]', proc.stdout)
    assert (work_dir / 'iter_2.pth').exists()


# ------------------------------- DDP: the ranks' weights, not only their logs

#: Two ranks of PROBE_BATCH images, or one process of 2 * PROBE_BATCH, on the
#: first PROBE_IMAGES demo images for PROBE_EPOCHS epochs: PROBE_ITERS steps.
#: Without shuffling, mmengine's DefaultSampler deals image i to rank i % 2,
#: and a step of the single process takes 2 * PROBE_BATCH consecutive
#: images, so step k of both runs trains on the same images (checked from
#: the image paths each rank records).
PROBE_RANKS = 2
PROBE_BATCH = 2
PROBE_IMAGES = 8
PROBE_EPOCHS = 2
PROBE_ITERS = PROBE_EPOCHS * PROBE_IMAGES // (PROBE_RANKS * PROBE_BATCH)
PROBE_LR = 0.1
#: DDP against one process: the same samples and the same mathematics, with
#: float32 sums in another order (a mean over 4 images against the mean of
#: two means over 2, kernels blocked for another batch size), i.e. gradients
#: a few ulps (~1e-7 relative) apart. Plain SGD moves a weight by lr * g per
#: step, so a few steps leave the weights ~1e-8 apart: rtol 1e-4 (about 1000
#: ulps) and atol 1e-6 (for weights near 0) leave room for that and none for
#: a rank that steps on its own half of the batch, which moves its weights by
#: ~lr * |g|. Measured (torch 2.14, gloo, 2 cores): the DDP ranks bit for bit
#: equal and at most 6e-8 from the single process; without the all-reduce
#: the ranks 0.22 apart and 145 and 159 of the 193 parameters outside the
#: tolerance (up to 0.11 and 0.25 from the single process), while training
#: moves 146 of them by more than the tolerance (up to 0.14).
PROBE_RTOL = 1e-4
PROBE_ATOL = 1e-6

#: The classification demo made deterministic and tiny: TINY_ARCH at 32x32
#: pixels, no drop path, no random augmentation, no shuffling, every norm in
#: eval mode (no batch statistics, which would differ between a batch of 2
#: and one of 4), SGD without momentum at a constant learning rate, no EMA,
#: no validation; the DDPProbeHook saves each rank's weights.
PROBE_CONFIG = '''\
_base_ = {base!r}
custom_imports = dict(
    imports=['saevit_mm', 'ddp_probe_hook'], allow_failed_imports=False)
model = dict(
    backbone=dict(arch={arch!r}, drop_path_rate=0.0, norm_eval=True),
    head=dict(in_channels={width}))
probe_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=36, edge='short'),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size={batch},
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(indices={images}, pipeline=probe_pipeline))
val_dataloader = None
val_evaluator = None
val_cfg = None
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr={lr}, momentum=0.0, weight_decay=0.0))
param_scheduler = None
train_cfg = dict(max_epochs={epochs}, val_interval={epochs})
randomness = dict(seed=0, diff_rank_seed=False)
custom_hooks = [dict(type='DDPProbeHook', allreduce={allreduce!r})]
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval={epochs}))
'''


def probe_config(directory: Path, allreduce: bool = True) -> Path:
    """:data:`PROBE_CONFIG` as a file in ``directory``."""
    name = 'allreduce' if allreduce else 'local-grads'
    config = directory / f'saevit-tiny_ddp-probe-{name}_demo-in1k-32px.py'
    config.write_text(
        PROBE_CONFIG.format(
            base=str(DEMO_CONFIGS['cls']),
            arch=dict(_delete_=True, **TINY_ARCH),  # not the base's 't'
            width=TINY_ARCH['embed_dims'][-1],
            batch=PROBE_BATCH,
            images=PROBE_IMAGES,
            lr=PROBE_LR,
            epochs=PROBE_EPOCHS,
            allreduce=allreduce))
    return config


def probe_env() -> Dict[str, str]:
    """``tests/`` importable by the launched processes (ddp_probe_hook)."""
    return dict(
        PYTHONPATH=os.pathsep.join(
            p for p in (str(REPO), str(REPO / 'tests'),
                        os.environ.get('PYTHONPATH')) if p))


def max_abs_diff(actual: Mapping[str, torch.Tensor],
                 expected: Mapping[str, torch.Tensor]) -> float:
    """The largest absolute difference over every entry of two states."""
    return max((float((actual[k].double() - v.double()).abs().max())
                for k, v in expected.items() if v.numel()),
               default=0.)


def weight_mismatches(actual: Mapping[str, torch.Tensor],
                      expected: Mapping[str, torch.Tensor], rtol: float,
                      atol: float) -> List[str]:
    """Entries outside ``|actual - expected| <= atol + rtol * |expected|``
    (after checking both states have the same keys), with their largest
    difference."""
    missing = sorted(expected.keys() - actual.keys())
    unexpected = sorted(actual.keys() - expected.keys())
    assert not missing and not unexpected, (missing, unexpected)
    mismatches = []
    for name, value in expected.items():
        diff = (actual[name].double() - value.double()).abs()
        if (diff > atol + rtol * value.double().abs()).any():
            mismatches.append(f'{name} (max |diff| {float(diff.max()):.3g})')
    return mismatches


def assert_weights_close(actual: Mapping[str, torch.Tensor],
                         expected: Mapping[str, torch.Tensor],
                         what: str,
                         rtol: float = 0.,
                         atol: float = 0.) -> None:
    """Every entry within tolerance (bit for bit by default); the message
    says how many differ, by how much and which."""
    mismatches = weight_mismatches(actual, expected, rtol, atol)
    assert not mismatches, (
        f'{what}: {len(mismatches)} of {len(expected)} entries differ '
        f'(rtol={rtol}, atol={atol}; max |diff| '
        f'{max_abs_diff(actual, expected):.3g}), e.g. {mismatches[:4]}')


def assert_ranks_equal(ranks: List[Dict]) -> None:
    """The ranks of a DDP run hold the same weights, bit for bit: the same
    start (DDP broadcasts rank 0's), the same all-reduced gradients."""
    for rank, probe in enumerate(ranks[1:], 1):
        assert_weights_close(probe['state_dict'], ranks[0]['state_dict'],
                             f'rank {rank} against rank 0')


def assert_matches_single(probe: Dict, single: Dict, rank: int) -> None:
    """Rank ``rank`` holds the single process' weights to float tolerance."""
    assert_weights_close(
        probe['state_dict'],
        single['state_dict'],
        f'rank {rank} against one process on the concatenated batches',
        rtol=PROBE_RTOL,
        atol=PROBE_ATOL)


def load_run(work_dir: Path, stage: str, ranks: int) -> List[Dict]:
    return [load_probe(work_dir, stage, rank) for rank in range(ranks)]


def check_same_start_and_samples(work_dir: Path, single_dir: Path) -> None:
    """What the comparison takes for granted: both runs start from the same
    weights and train, step by step, on the same images, and training moves
    the weights (further than the tolerance)."""
    before = load_run(work_dir, 'before', PROBE_RANKS)
    after = load_run(work_dir, 'after', PROBE_RANKS)
    single_before, = load_run(single_dir, 'before', 1)
    single, = load_run(single_dir, 'after', 1)
    assert [p['iter'] for p in after] == [PROBE_ITERS] * PROBE_RANKS
    assert single['iter'] == PROBE_ITERS
    for probe in before:
        assert_weights_close(probe['state_dict'], single_before['state_dict'],
                             'initial weights against one process')
    for step, batch in enumerate(single['batches']):
        per_rank = [p['batches'][step] for p in after]
        assert [len(b) for b in per_rank] == [PROBE_BATCH] * PROBE_RANKS
        assert sorted(sum(per_rank, [])) == sorted(batch), step
        assert len(set(batch)) == len(batch) == PROBE_RANKS * PROBE_BATCH
    assert len(single['batches']) == PROBE_ITERS
    params = single['parameters']
    moved = weight_mismatches(
        {name: single['state_dict'][name]
         for name in params},
        {name: single_before['state_dict'][name]
         for name in params}, PROBE_RTOL, PROBE_ATOL)
    assert len(moved) > len(params) // 2, \
        f'training moved only {len(moved)} of {len(params)} parameters'


@pytest.fixture(scope='module')
def single_process_probe(tmp_path_factory) -> Path:
    """The work directory of one process (tools/train.py, no launcher)
    trained with PROBE_RANKS * PROBE_BATCH images a step."""
    pytest.importorskip('mmpretrain.models')
    data_root = demo_data_root(tmp_path_factory)
    directory = tmp_path_factory.mktemp('ddp_probe_single')
    work_dir = directory / 'work'
    run_tool([
        'tools/train.py',
        probe_config(directory), '--work-dir', work_dir, '--cfg-options',
        f'train_dataloader.batch_size={PROBE_RANKS * PROBE_BATCH}'
    ],
             data_root=data_root,
             env_extra=probe_env())
    return work_dir


def run_probe_ddp(tmp_path_factory, tmp_path: Path, allreduce: bool):
    """tools/dist_train.sh of the probe config on PROBE_RANKS processes."""
    work_dir = tmp_path / 'work'
    proc = run_dist_train(
        probe_config(tmp_path, allreduce),
        PROBE_RANKS,
        work_dir,
        data_root=demo_data_root(tmp_path_factory),
        env_extra=probe_env())
    ranks = set(
        re.findall(r'CPU distributed run: backend=gloo, rank (\d)/2',
                   proc.stdout))
    assert ranks == {'0', '1'}, proc.stdout[-3000:]
    return work_dir, proc


@pytest.mark.slow
@pytest.mark.cls
def test_ddp_ranks_end_equal_and_equal_to_one_process(tmp_path_factory,
                                                      tmp_path,
                                                      single_process_probe):
    """tools/dist_train.sh CONFIG 2 (gloo): after PROBE_ITERS SGD steps both
    ranks hold the same weights, and those of one process that trained on
    the two ranks' batches put together."""
    work_dir, proc = run_probe_ddp(tmp_path_factory, tmp_path, True)
    assert MUTANT_MESSAGE not in proc.stdout
    check_same_start_and_samples(work_dir, single_process_probe)
    after = load_run(work_dir, 'after', PROBE_RANKS)
    single, = load_run(single_process_probe, 'after', 1)
    assert_ranks_equal(after)
    for rank, probe in enumerate(after):
        assert_matches_single(probe, single, rank)


@pytest.mark.slow
@pytest.mark.cls
def test_ddp_checks_catch_ranks_without_gradient_all_reduce(
        tmp_path_factory, tmp_path, single_process_probe):
    """The test above can fail: with a DDP communication hook that keeps each
    rank's own gradients (no all-reduce), the same checks find the ranks
    apart from each other and from the single process."""
    work_dir, proc = run_probe_ddp(tmp_path_factory, tmp_path, False)
    for rank in range(PROBE_RANKS):
        assert f'{MUTANT_MESSAGE} on rank {rank}' in proc.stdout
    check_same_start_and_samples(work_dir, single_process_probe)
    after = load_run(work_dir, 'after', PROBE_RANKS)
    single, = load_run(single_process_probe, 'after', 1)
    with pytest.raises(AssertionError, match='rank 1 against rank 0'):
        assert_ranks_equal(after)
    for rank, probe in enumerate(after):
        with pytest.raises(AssertionError, match=f'rank {rank} against one'):
            assert_matches_single(probe, single, rank)
