"""Golden outputs of SAEViT-t: summary values of its four outputs for
seeded weights and a fixed input, in float64, and of the gradients and
running statistics of one training-mode step.

``tests/test_models/test_backbones/test_golden.py`` compares the eager and
the deployed backbone with the committed values, so a change of the forward
math fails even when it keeps every shape. After a deliberate architecture
change, regenerate them in a commit of their own:

    python tools/misc/golden_outputs.py
"""
import argparse
import json
import re
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from saevit_mm.deploy import switch_to_deploy
from saevit_mm.models import SAEViT

GOLDEN = Path(__file__).resolve().parents[2] / 'tests' / 'data' / \
    'golden_saevit_t.json'
INPUT_SHAPE = (2, 3, 96, 128)
SAMPLES = 8


def _drawn_layout(model: SAEViT) -> List[Tuple[str, torch.Size]]:
    """Keys and shapes in the order the golden weights are drawn: the
    model's state dict in the per-group CIFFN layout the values were made
    with (each depth-wise convolution followed by its own norm,
    ``dwconvs.<j>.conv.weight``, ``dwconvs.<j>.norm.*``), which
    :meth:`SAEViT.load_state_dict` upgrades to the current one."""
    state = model.state_dict()
    layout = []
    for key, value in state.items():
        match = re.fullmatch(r'(.*\.)dwconvs\.(\d+)\.weight', key)
        if re.fullmatch(r'.*\.dw_norm\..*', key):
            continue  # drawn per group, after each convolution
        if match is None:
            layout.append((key, value.shape))
            continue
        prefix, j = match.groups()
        layout.append((f'{prefix}dwconvs.{j}.conv.weight', value.shape))
        for norm_key, norm_value in state.items():
            if norm_key.startswith(f'{prefix}dw_norm.'):
                name = norm_key[len(f'{prefix}dw_norm.'):]
                shape = norm_value.shape if norm_value.dim() == 0 else \
                    torch.Size([value.shape[0]])
                layout.append((f'{prefix}dwconvs.{j}.norm.{name}', shape))
    return layout


def seeded_saevit_t(seed: int = 0) -> SAEViT:
    """SAEViT-t in eval mode, float64, every parameter and norm statistic
    drawn from one generator (``randn``, stable across torch versions), in
    the order of :func:`_drawn_layout`."""
    model = SAEViT('t', out_indices=(0, 1, 2, 3)).double().eval()
    gen = torch.Generator().manual_seed(seed)

    def draw(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    state = {}
    for name, shape in _drawn_layout(model):
        if name.endswith('num_batches_tracked'):
            state[name] = torch.tensor(0)
        elif name.endswith('running_var'):
            state[name] = 1 + 0.5 * draw(shape).abs()
        elif name.endswith('running_mean') or name.endswith('bias'):
            state[name] = 0.1 * draw(shape)
        elif len(shape) == 1:  # norm weights
            state[name] = 1 + 0.2 * draw(shape)
        else:
            state[name] = draw(shape) / shape[1:].numel()**.5
    model.load_state_dict(state)
    return model


def fixed_input() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1234)
    return torch.randn(INPUT_SHAPE, generator=gen, dtype=torch.float64)


def summarize(outputs) -> List[Dict]:
    """Mean, std and ``SAMPLES`` values at fixed places of each output."""
    summary = []
    for out in outputs:
        flat = out.detach().flatten()
        index = torch.linspace(0, flat.numel() - 1, SAMPLES).long()
        summary.append(
            dict(
                shape=list(out.shape),
                mean=flat.mean().item(),
                std=flat.std().item(),
                samples=flat[index].tolist()))
    return summary


def golden_summary(deploy: bool) -> List[Dict]:
    model = seeded_saevit_t()
    if deploy:
        switch_to_deploy(model, probe_size=INPUT_SHAPE[-2:])
    with torch.no_grad():
        return summarize(model(fixed_input()))


def gradient_summary() -> Dict[str, List[Dict]]:
    """One training-mode step of the seeded model (batch statistics): the
    gradients of a fixed weighting of its outputs, summarised for the
    input and for the parameters of each top-level part (stem, each stage,
    the stage norms, concatenated in state-dict order), and the running
    statistics the step leaves."""
    model = seeded_saevit_t().train()
    x = fixed_input().requires_grad_()
    outs = model(x)
    loss = sum(
        (out *
         torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)
         ).sum() for out in outs)
    loss.backward()
    parts: Dict[str, List[torch.Tensor]] = {}
    for name, param in model.named_parameters():
        part = name.split('.')[0]
        part = f'stages.{name.split(".")[1]}' if part == 'stages' else part
        parts.setdefault(part, []).append(param.grad.flatten())
    stats = [
        buffer.flatten() for name, buffer in model.named_buffers()
        if name.endswith(('running_mean', 'running_var'))
    ]
    return dict(
        input=summarize([x.grad])[0],
        params={
            part: summarize([torch.cat(grads)])[0]
            for part, grads in parts.items()
        },
        running_stats=summarize([torch.cat(stats)])[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, default=GOLDEN)
    args = parser.parse_args()
    summary = golden_summary(deploy=False)
    args.out.write_text(
        json.dumps(
            dict(
                command='python tools/misc/golden_outputs.py',
                input_shape=list(INPUT_SHAPE),
                outputs=summary,
                gradients=gradient_summary()),
            indent=1) + '\n')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
