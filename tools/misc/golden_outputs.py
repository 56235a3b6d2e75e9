"""Golden outputs of SAEViT-t: summary values of its four outputs for
seeded weights and a fixed input, in float64.

``tests/test_models/test_backbones/test_golden.py`` compares the eager and
the deployed backbone with the committed values, so a change of the forward
math fails even when it keeps every shape. After a deliberate architecture
change, regenerate them in a commit of their own:

    python tools/misc/golden_outputs.py
"""
import argparse
import json
from pathlib import Path
from typing import Dict, List

import torch

from saevit_mm.deploy import switch_to_deploy
from saevit_mm.models import SAEViT

GOLDEN = Path(__file__).resolve().parents[2] / 'tests' / 'data' / \
    'golden_saevit_t.json'
INPUT_SHAPE = (2, 3, 96, 128)
SAMPLES = 8


def seeded_saevit_t(seed: int = 0) -> SAEViT:
    """SAEViT-t in eval mode, float64, every parameter and norm statistic
    drawn from one generator (``randn``, stable across torch versions)."""
    model = SAEViT('t', out_indices=(0, 1, 2, 3)).double().eval()
    gen = torch.Generator().manual_seed(seed)

    def draw(tensor):
        return torch.randn(tensor.shape, generator=gen, dtype=torch.float64)

    with torch.no_grad():
        for name, value in model.state_dict().items():
            if not value.is_floating_point():
                continue
            if name.endswith('running_var'):
                value.copy_(1 + 0.5 * draw(value).abs())
            elif name.endswith('running_mean') or name.endswith('bias'):
                value.copy_(0.1 * draw(value))
            elif value.dim() == 1:  # norm weights
                value.copy_(1 + 0.2 * draw(value))
            else:
                fan_in = value[0].numel()
                value.copy_(draw(value) / fan_in**.5)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, default=GOLDEN)
    args = parser.parse_args()
    summary = golden_summary(deploy=False)
    args.out.write_text(json.dumps(
        dict(command='python tools/misc/golden_outputs.py',
             input_shape=list(INPUT_SHAPE), outputs=summary), indent=1) + '\n')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
