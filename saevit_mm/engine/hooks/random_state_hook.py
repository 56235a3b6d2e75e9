"""Random-number states in checkpoints, so ``--resume`` redoes an epoch
exactly.

mmengine 0.10.7 checkpoints store the seed but not the state of the random
number generators, and a resumed run starts from a freshly seeded state. The
drop path of the backbone and the random augmentations of the training
pipeline (``RandomResizedCrop``, ``RandomFlip``, run in the main process when
``num_workers=0``) then draw different numbers than the uninterrupted run,
so the weights after ``--resume`` differ from those of a run that was never
stopped.

:class:`RandomStateHook` keeps, for each epoch, the states of python's
``random``, numpy's global generator, torch's CPU generator and (when CUDA is
available) every CUDA generator, as they are when the epoch starts, and
writes them into every checkpoint. In a distributed run every process has
its own generators (``randomness.diff_rank_seed=True`` seeds them
differently), so the hook gathers the states of all ranks and the
checkpoint holds one entry per rank. On ``--resume`` the epoch that follows
the checkpoint starts from exactly those states, each rank from its own
entry. Together with mmengine's ``DefaultSampler`` (data order seeded by
``seed + epoch``) the resumed epochs repeat the uninterrupted run's, batch
for batch and draw for draw.
"""
import logging
import random
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

from saevit_mm.registry import register_hook

__all__ = [
    'RANDOM_STATE_KEY', 'get_random_state', 'set_random_state',
    'RandomStateHook'
]

#: Top-level checkpoint key that holds the states (beside mmengine's
#: ``meta``, ``state_dict``, ``optimizer``...): a list with one
#: :func:`get_random_state` dict per rank, in rank order.
RANDOM_STATE_KEY = 'random_state'


def get_random_state() -> Dict[str, Any]:
    """The states of python's, numpy's, torch's and CUDA's generators.

    Stored as plain containers, ints, floats, strings and uint8 tensors only,
    so that a checkpoint holding them still loads with
    ``torch.load(weights_only=True)``.

    Returns:
        A dict with the keys ``python``, ``numpy``, ``torch`` and, when CUDA
        is available, ``cuda`` (one state per device).
    """
    version, internal, gauss_next = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = dict(
        python=dict(
            version=version, state=list(internal), gauss_next=gauss_next),
        numpy=dict(
            bit_generator=np_state['bit_generator'],
            key=[int(k) for k in np_state['state']['key']],
            pos=int(np_state['state']['pos']),
            has_gauss=int(np_state['has_gauss']),
            gauss=float(np_state['gauss'])),
        torch=torch.get_rng_state())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: Dict[str, Any]) -> None:
    """Restore the states :func:`get_random_state` returned.

    A ``cuda`` entry is restored when CUDA is available with as many devices
    as were saved; otherwise the CUDA generators are left as they are and a
    warning says so.

    Args:
        state: What :func:`get_random_state` returned.
    """
    python = state['python']
    random.setstate(
        (python['version'], tuple(python['state']), python['gauss_next']))
    numpy = state['numpy']
    np.random.set_state(
        dict(
            bit_generator=numpy['bit_generator'],
            state=dict(
                key=np.asarray(numpy['key'], dtype=np.uint32),
                pos=numpy['pos']),
            has_gauss=numpy['has_gauss'],
            gauss=numpy['gauss']))
    torch.set_rng_state(state['torch'].cpu())
    cuda: Optional[List[torch.Tensor]] = state.get('cuda')
    if not torch.cuda.is_available():
        return
    if cuda is None or len(cuda) != torch.cuda.device_count():
        print_log(
            'RandomStateHook: the checkpoint holds CUDA generator states for '
            f'{0 if cuda is None else len(cuda)} device(s), this process '
            f'sees {torch.cuda.device_count()}; the CUDA generators are not '
            'restored, so CUDA random draws differ from the interrupted run.',
            logger='current',
            level=logging.WARNING)
        return
    torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def _warn_on_sampler_seed(runner, seed: Optional[int]) -> None:
    """Warn when the training sampler's seed is not the checkpoint's.

    With ``randomness.seed=None`` mmengine draws a new seed for the resumed
    run and builds the sampler with it before ``Runner.resume`` re-seeds the
    generators with the checkpoint's seed, so the data order of the resumed
    epochs differs from the interrupted run's. With
    ``randomness.diff_rank_seed=True`` mmengine gives the sampler a seed
    drawn from rank 0's numpy generator instead of ``seed``, so there is
    nothing to compare and nothing is said.
    """
    randomness = getattr(runner, '_randomness_cfg', None) or {}
    if randomness.get('diff_rank_seed', False):
        return
    loader = getattr(getattr(runner, 'train_loop', None), 'dataloader', None)
    sampler = getattr(loader, 'sampler', None)
    sampler_seed = getattr(sampler, 'seed', None)
    if seed is None or sampler_seed is None or sampler_seed == seed:
        return
    print_log(
        f'RandomStateHook: the training sampler has the seed {sampler_seed}, '
        f'the checkpoint was trained with {seed}: the resumed epochs see the '
        'data in another order than an uninterrupted run. Resume with '
        f'--cfg-options randomness.seed={seed} for an exact resume.',
        logger='current',
        level=logging.WARNING)


def _stored_states(stored: Any) -> List[Dict[str, Any]]:
    """The per-rank list of states a checkpoint holds under
    :data:`RANDOM_STATE_KEY`; a single dict is the states of one process."""
    if isinstance(stored, dict):
        return [stored]
    if isinstance(stored, (list, tuple)) and all(
            isinstance(state, dict) for state in stored):
        return list(stored)
    raise TypeError(
        f'RandomStateHook: the checkpoint\'s {RANDOM_STATE_KEY!r} is a '
        f'{type(stored).__name__}; expected a list with one dict of states '
        'per rank (or one dict, the states of a single process).')


@register_hook
class RandomStateHook(Hook):
    """Make ``--resume`` from an epoch checkpoint repeat the training exactly.

    Each training epoch starts from the random states the previous epoch
    ended with (taken in ``after_train_epoch``, before ``CheckpointHook``
    saves). Every checkpoint stores the states its next epoch starts from,
    under the top-level key ``random_state``; on resume they are restored at
    the start of the first resumed epoch.

    Restoring in ``before_train_epoch`` rather than in
    ``after_load_checkpoint`` matters twice. ``Runner.resume`` re-seeds every
    generator *after* the hooks' ``after_load_checkpoint`` when the
    checkpoint's seed differs from the config's, which would undo an earlier
    restore. And the validation loop between two epochs draws from torch's
    generator (each ``DataLoader`` iterator draws its base seed), which a
    resumed run does not repeat; so an uninterrupted run also restores the
    end-of-epoch states before its next epoch, and validation never shifts
    the training's random numbers.

    Distributed runs: the states are gathered from every rank where they are
    taken (``before_train_epoch`` of the first epoch, ``after_train_epoch``),
    because only rank 0 writes the checkpoint. ``random_state`` is a list in
    rank order, and on resume rank ``r`` restores entry ``r``. A checkpoint
    with another number of entries than the run has ranks (a different
    world size; a single dict counts as one entry) restores nothing: every
    rank keeps the states its seed gave it and a warning says so, since no
    assignment of the stored states to the new ranks repeats the
    interrupted run (the sampler also splits the data differently).

    What is exact and what is not:

    * Exact: ``EpochBasedTrainLoop``, checkpoints by epoch (the default of
      ``CheckpointHook``), a fixed ``randomness.seed`` (with ``seed=None``
      mmengine builds the resumed run's sampler with a new seed before it
      reads the checkpoint's; the hook warns then, except with
      ``diff_rank_seed=True``, where the sampler's seed is a draw it cannot
      compare with the checkpoint's), the world size the checkpoint was
      written with, ``num_workers=0``, or ``num_workers > 0`` with
      ``persistent_workers=False`` (mmengine's ``worker_init_fn`` seeds every
      worker of every epoch with ``seed + num_workers * rank + worker_id``,
      whatever the main process' state; batches go to workers round-robin).
    * Not exact: ``num_workers > 0`` with ``persistent_workers=True``: the
      workers keep their generators from epoch to epoch, they live in other
      processes, and a resumed run starts them from their seeds again, so
      the augmentations of the resumed epochs differ. Checkpoints by
      iteration in the middle of an epoch: mmengine 0.10.7's
      ``EpochBasedTrainLoop`` restarts that epoch from its first batch and
      replays the batches already trained on; the stored states are those
      at the start of the epoch, which is all this hook can do for it.
    * ``load_from`` without ``--resume`` (fine-tuning) ignores the stored
      states: the run keeps the randomness of its own config.

    Example:
        >>> # in a config (custom_imports=['saevit_mm'] registers it)
        >>> custom_hooks = [dict(type='RandomStateHook')]
        >>> from saevit_mm.engine.hooks import get_random_state
        >>> sorted(get_random_state())[:3]
        ['numpy', 'python', 'torch']
    """
    # before every other hook in before_train_epoch (nothing may draw from
    # the generators of the new epoch before they are restored), and in
    # after_train_epoch before CheckpointHook (VERY_LOW) saves
    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        #: The states of every rank, in rank order, that the current (or,
        #: after an epoch, the next) epoch starts from; None until the first
        #: epoch starts or a checkpoint is resumed.
        self._epoch_states: Optional[List[Dict[str, Any]]] = None

    @staticmethod
    def _gather_states() -> List[Dict[str, Any]]:
        """This rank's states and every other rank's (a collective: all
        ranks call it at the same point)."""
        return all_gather_object(get_random_state())

    def before_train_epoch(self, runner) -> None:
        if self._epoch_states is None:
            self._epoch_states = self._gather_states()
        else:
            set_random_state(self._epoch_states[get_rank()])

    def after_train_epoch(self, runner) -> None:
        self._epoch_states = self._gather_states()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Runner.save_checkpoint runs on rank 0 only: no collective here
        states = self._epoch_states
        if states is None:
            if get_world_size() > 1:
                # no epoch has started: the other ranks' states are unknown
                return
            states = [get_random_state()]
        checkpoint[RANDOM_STATE_KEY] = states

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # EMAHook tells resume from load_from the same way
        if not runner._resume:
            return
        _warn_on_sampler_seed(runner, checkpoint.get('meta', {}).get('seed'))
        stored = checkpoint.get(RANDOM_STATE_KEY)
        if stored is None:
            print_log(
                f'RandomStateHook: the checkpoint has no {RANDOM_STATE_KEY!r} '
                '(written without this hook); the resumed epochs draw other '
                'random numbers than an uninterrupted run would.',
                logger='current',
                level=logging.WARNING)
            return
        states = _stored_states(stored)
        world_size = get_world_size()
        if len(states) != world_size:
            print_log(
                f'RandomStateHook: the checkpoint holds the random states of '
                f'{len(states)} process(es), this run has {world_size}; no '
                'rank restores them (each keeps the states its seed gave '
                'it), so the resumed epochs draw other random numbers than '
                'the interrupted run would. An exact resume needs the world '
                f'size the checkpoint was written with ({len(states)}).',
                logger='current',
                level=logging.WARNING)
            return
        self._epoch_states = states
