"""CPU distributed set-up (saevit_mm.engine.dist) and tools/dist_train.sh."""
import re
import sys

import pytest
from e2e_utils import (DEMO_CONFIGS, TINY_OPTIONS, demo_data_root,
                       run_dist_train, run_tool)
from mmengine.config import Config

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
