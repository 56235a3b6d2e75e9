"""What a backbone costs to train: step time, bytes kept for backward, ops.

``benchmark.py --train`` runs this. Every model is a backbone with all four
outputs (strides 4 to 32, as an FPN reads them), in train mode, float32; a
step is its forward and the backward of the mean of its outputs (the
parameters' gradients, zeroed before each step). Per model and input size:
the step time (milliseconds; interleaved rounds, order rotated each round,
as the inference benchmark), the bytes of the unique storages autograd keeps
for backward (parameters excluded;
:func:`saevit_mm.models.utils.cost.train_step_cost`), and, at batch 2 of
224 x 224, the aten ops of the forward and of forward + backward (views and
``detach`` excluded; each at least one kernel launch on a GPU). Ratios are
to ResNet-18 in the same run.
"""
import importlib
import warnings
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

#: The default models of ``--train``: ours and the peers of the issue's
#: table (the timm peers build too: ``--models``).
TRAIN_MODELS = ('SAEViT-t', 'SAEViT-s', 'ResNet-18', 'EdgeNeXt-xsmall',
                'EdgeNeXt-small', 'PVTv2-b0')
#: Batch, height, width: detection (2 x 800 x 1344, a padded 800 x 1333)
#: and segmentation (4 x 512 x 512), as the users' configs run them.
TRAIN_SIZES = ((2, 800, 1344), (4, 512, 512))
TRAIN_PRESETS = dict(
    default=dict(sizes=TRAIN_SIZES, repeats=3),
    tiny=dict(sizes=((2, 64, 96), ), repeats=1))
#: Where ops are counted (the issue's protocol: batch 2 at 224).
OPS_INPUT = (2, 3, 224, 224)
REFERENCE = 'ResNet-18'


def release_memory() -> None:
    """Give freed heap memory back to the OS (glibc's ``malloc_trim``).

    Freed maps of a training step stay in glibc's heap, and the next
    model's steps, of other sizes, take new memory beside them: measuring
    model after model in one process grew past 24 GB. Called between
    measurements, never inside a timed step; it changes no allocator
    setting.
    """
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def build_backbone(name: str, models: Dict, package=None) -> nn.Module:
    """``models[name]``'s backbone with its four outputs of strides 4-32;
    a saevit_mm model from ``package`` (another revision's saevit_mm,
    :func:`revision_import.import_revision`) if given."""
    scope, cfg = models[name][:2]
    if package is not None:
        cfg = dict(cfg)
        return getattr(package.models, cfg.pop('type'))(
            **cfg, out_indices=(0, 1, 2, 3))
    if scope == 'timm':
        import timm
        return timm.create_model(
            cfg, pretrained=False, features_only=True,
            out_indices=(1, 2, 3, 4))
    from mmengine.registry import DefaultScope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope), \
            warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        return registry.build(dict(cfg, out_indices=(0, 1, 2, 3)))


def step_timer(model: nn.Module, x: torch.Tensor) -> Callable[[], float]:
    """A task timing one training step (ms); the first call runs an
    untimed step before it."""
    warm = []

    def step() -> None:
        model.zero_grad(set_to_none=True)
        outs = model(x)
        outs = [outs] if isinstance(outs, torch.Tensor) else outs
        sum(out.float().mean() for out in outs).backward()
        if x.device.type == 'cuda':
            torch.cuda.synchronize(x.device)

    def task() -> float:
        import time
        model.train()
        if not warm:
            step()
            warm.append(True)
        start = time.perf_counter()
        step()
        elapsed = time.perf_counter() - start
        release_memory()
        return 1e3 * elapsed

    return task


def run_train(names: Sequence[str],
              preset: Dict,
              models: Dict,
              interleave: Callable,
              device: str = 'cpu',
              log: Callable[[str], None] = print,
              baseline: Optional[str] = None) -> Dict:
    """Build each model, count its cost and time its steps, interleaved;
    with ``baseline`` (a git revision) the saevit_mm models also as of that
    revision (rows ``'<name> [@<rev>]'``), in the same rounds.

    Returns:
        ``settings`` and one row per model: ``name``, ``ops_forward``,
        ``ops_train``, and per size key (``'2x800x1344'``) ``saved_bytes``
        and the step time stats (``ms``).
    """
    from saevit_mm.models.utils.cost import train_step_cost
    package = None
    if baseline is not None:
        from revision_import import import_revision
        package = import_revision(baseline)
    rows, built = {}, {}
    sizes = {f'{b}x{h}x{w}': (b, h, w) for b, h, w in preset['sizes']}
    variants = [(name, name, None) for name in names]
    variants += [(f'{name} [@{baseline}]', name, package) for name in names
                 if package is not None and models[name][0] == 'saevit_mm']
    for key_name, name, source in variants:
        row = rows[key_name] = dict(name=key_name, sizes={})
        log(f'building {key_name}')
        try:
            model = build_backbone(name, models, source).to(device)
            counted = train_step_cost(model, torch.randn(*OPS_INPUT,
                                                         device=device))
            row.update(ops_forward=counted['ops_forward'],
                       ops_train=counted['ops_train'])
            for key, (b, h, w) in sizes.items():
                x = torch.randn(b, 3, h, w, device=device)
                row['sizes'][key] = train_step_cost(model, x, count_ops=False)
                del x
                release_memory()
            built[key_name] = model
        except Exception as exc:  # noqa: BLE001 (reported in the row)
            row['error'] = f'{type(exc).__name__}: {exc}'.split('\n')[0]
    inputs = {
        key: torch.randn(b, 3, h, w, device=device)
        for key, (b, h, w) in sizes.items()
    }
    tasks = {(name, key): step_timer(model, inputs[key])
             for key in sizes for name, model in built.items()}
    errors: Dict = {}
    timed = interleave(tasks, preset['repeats'], errors, log)
    for (name, key), stats in timed.items():
        rows[name]['sizes'][key]['ms'] = stats
    for (name, key), message in errors.items():
        rows[name]['sizes'][key]['ms'] = dict(error=message)
    return dict(settings=dict(preset, sizes=list(sizes), baseline=baseline),
                models=list(rows.values()))


def _ratio(row: Dict, ref: Optional[Dict], key: str,
           field: str) -> Tuple[str, str]:
    """``(value, value / reference)`` cells of one size column."""
    def get(r):
        value = (r or {}).get('sizes', {}).get(key, {}).get(field)
        return value.get('median') if isinstance(value, dict) else value

    value, base = get(row), get(ref)
    if value is None:
        return 'n/a', '-'
    shown = f'{value:.0f}' if field == 'ms' else f'{value / 2**30:.2f}'
    return shown, f'{value / base:.2f}' if base else '-'


def train_markdown(result: Dict) -> str:
    """One table per input size and the ops table, each naming the
    machine."""
    m, s = result['machine'], result['settings']
    rows = [r for r in result['models'] if 'error' not in r]
    ref = next((r for r in rows if r['name'] == REFERENCE), None)
    where = (f'{m["cpu"]}, {m["threads"]} threads, torch {m["torch"]}, '
             f'{m["device"]}')
    lines = []
    for key in s['sizes']:
        lines += [
            f'Training step at {key} ({where}):', '',
            '| model | step ms | / ResNet-18 | saved for backward (GiB) | '
            '/ ResNet-18 |', '| --- | ---: | ---: | ---: | ---: |'
        ]
        for row in rows:
            ms = row['sizes'].get(key, {}).get('ms') or {}
            spread = (f' ±{50 * (ms["high"] - ms["low"]) / ms["median"]:.0f}%'
                      if 'median' in ms else '')
            time_cell, time_ratio = _ratio(row, ref, key, 'ms')
            saved, saved_ratio = _ratio(row, ref, key, 'saved_bytes')
            lines.append(f'| {row["name"]} | {time_cell}{spread} | '
                         f'{time_ratio} | {saved} | {saved_ratio} |')
        lines.append('')
    b, c, h, w = OPS_INPUT
    lines += [
        f'aten ops at {b} x {c} x {h} x {w}, train mode (views and detach '
        'excluded; the same on any CPU):', '',
        '| model | forward | forward + backward |', '| --- | ---: | ---: |'
    ]
    lines += [
        f'| {r["name"]} | {r["ops_forward"]} | {r["ops_train"]} |'
        for r in rows
    ]
    lines += [
        '', f'Step times: medians of {s["repeats"]} interleaved rounds, ± '
        'half the range. Command: '
        f'`{result.get("command", "")}`.'
    ]
    errors = [f'- {r["name"]}: {r["error"]}' for r in result['models']
              if 'error' in r]
    if errors:
        lines += ['', 'Failed:', '', *errors]
    return '\n'.join(lines) + '\n'


def train_plot(result: Dict, path) -> None:
    """Step time and saved bytes over ResNet-18's, per size."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = [r for r in result['models'] if 'error' not in r]
    ref = next((r for r in rows if r['name'] == REFERENCE), None)
    sizes = result['settings']['sizes']
    fig, axes = plt.subplots(1, len(sizes), figsize=(7 * len(sizes), 4.5),
                             squeeze=False)
    for ax, key in zip(axes[0], sizes):
        for i, (field, label) in enumerate((('ms', 'step time'),
                                            ('saved_bytes', 'saved bytes'))):
            values = [
                float(_ratio(r, ref, key, field)[1])
                if _ratio(r, ref, key, field)[1] != '-' else 0 for r in rows
            ]
            ax.bar([j + 0.4 * i for j in range(len(rows))], values, 0.4,
                   label=label)
        ax.axhline(1, color='grey', lw=0.8)
        ax.set_xticks([j + 0.2 for j in range(len(rows))])
        ax.set_xticklabels([r['name'] for r in rows], rotation=30,
                           ha='right', fontsize=8)
        ax.set(title=f'training step at {key}', ylabel='/ ResNet-18')
        ax.legend(fontsize=8)
    m = result['machine']
    fig.suptitle(f'{m["cpu"]}, {m["threads"]} threads, torch {m["torch"]}',
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
