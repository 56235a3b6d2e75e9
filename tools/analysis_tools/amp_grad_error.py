"""Gradient error of a backbone under CPU autocast, against float64, beside
ResNet-18 measured the same way in the same run.

Protocol: training mode (batch statistics), a fixed random projection of the
four outputs as the loss, static loss scale 1024; the relative L2 error of
all parameter gradients against the same model in float64, per seed; the
ratio to ResNet-18's error at the same batch, dtype and seed. With
``--norm-variance`` it also prints the median variance entering the norms
whose name matches ``--norm-filter`` (what a norm divides by, against its
eps).

    python tools/analysis_tools/amp_grad_error.py --batch 1 2 8 --seeds 0 1 2
"""
import argparse
import copy
import json
import logging
import re
import statistics
import sys
from typing import Callable, Dict, List, Sequence

import torch
from mmengine.logging import MMLogger
from torch import nn

from saevit_mm.models import SAEViT

LOSS_SCALE = 1024.
DTYPES = dict(fp16=torch.float16, bf16=torch.bfloat16)


class ResNet18Stages(nn.Module):
    """torchvision's ResNet-18 returning its four stage outputs."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet18
        net = resnet18()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList(
            [net.layer1, net.layer2, net.layer3, net.layer4])

    def forward(self, x):
        x, outs = self.stem(x), []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return tuple(outs)


def build_saevit(**kwargs) -> nn.Module:
    model = SAEViT(out_indices=(0, 1, 2, 3), **kwargs)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


def _loss(outs: Sequence[torch.Tensor], projections: Sequence[torch.Tensor]):
    return sum((o.to(p.dtype) * p).sum() for o, p in zip(outs, projections))


def grad_error(build: Callable[[], nn.Module], batch: int, size: Sequence[int],
               dtype: torch.dtype, seed: int) -> float:
    """Relative L2 error of the autocast gradients against float64."""
    torch.manual_seed(seed)
    model = build().train()
    x = torch.randn(batch, 3, *size)
    reference = copy.deepcopy(model).double()
    outs = reference(x.double())
    projections = [
        torch.randn_like(o) / o[0].numel()**.5 for o in outs
    ]
    params = [p for p in reference.parameters() if p.requires_grad]
    exact = torch.autograd.grad(_loss(outs, projections), params)
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.autocast('cpu', dtype=dtype):
        outs = model(x)
    loss = _loss(outs, [p.float() for p in projections]) * LOSS_SCALE
    grads = torch.autograd.grad(loss, params)
    error = torch.cat([(g.double() / LOSS_SCALE - e).flatten()
                       for g, e in zip(grads, exact)])
    norm = torch.cat([e.flatten() for e in exact]).norm()
    return (error.norm() / norm).item()


def norm_variance(model: nn.Module, x: torch.Tensor,
                  pattern: str) -> Dict[str, float]:
    """Median variance of what each matching norm normalises (per channel
    over batch and pixels for a BatchNorm, per pixel over channels for a
    LayerNorm), one forward in training mode."""
    seen, handles = {}, []
    for name, module in model.named_modules():
        if not re.search(pattern, name) or not isinstance(
                module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)):
            continue

        def hook(m, inputs, name=name):
            t = inputs[0].detach().double()
            dims = (1, ) if isinstance(m, nn.LayerNorm) else (0, 2, 3)
            seen[name] = t.var(dim=dims, unbiased=False).median().item()

        handles.append(module.register_forward_pre_hook(hook))
    model.train()(x)
    for handle in handles:
        handle.remove()
    return seen


def markdown(result: Dict, command: str) -> str:
    """The results as a markdown section: the command, one row per batch
    and dtype, and the norm variances."""
    settings = result['settings']
    lines = [
        f'`{command}`', '',
        f'SAEViT-{settings["arch"]} and ResNet-18 at '
        f'{settings["size"][0]}x{settings["size"][1]}, training mode, seeds '
        f'{settings["seeds"]}: relative L2 error of all parameter gradients '
        'under CPU autocast against float64, per seed.', '',
        '| batch | dtype | SAEViT | ResNet-18 | ratio (median, max) |',
        '| ---: | --- | --- | --- | --- |'
    ]
    for row in result['rows']:
        lines.append(
            f'| {row["batch"]} | {row["dtype"]} | '
            + ', '.join(f'{e:.3g}' for e in row['saevit']) + ' | '
            + ', '.join(f'{e:.3g}' for e in row['resnet18'])
            + f' | {row["ratio_median"]:.2f}, {row["ratio_max"]:.2f} |')
    if 'norm_variance' in result:
        lines += [
            '', f'Median variance entering each norm matching '
            f'`{settings["norm_filter"]}` (one forward, seed 0):', '',
            '| batch | norm | variance |', '| ---: | --- | ---: |'
        ]
        for batch, values in result['norm_variance'].items():
            for name, value in values.items():
                lines.append(f'| {batch} | `{name}` | {value:.2g} |')
    return '\n'.join(lines) + '\n'


def main(argv: List[str] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='t')
    parser.add_argument('--size', type=int, nargs=2, default=(256, 320))
    parser.add_argument('--batch', type=int, nargs='+', default=[1, 2, 8])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--dtypes', nargs='+', default=list(DTYPES),
                        choices=list(DTYPES))
    parser.add_argument(
        '--recovery-norm', default=None,
        help='SAEViT recovery_norm_cfg type (LN2d, BN, none); default: the '
        "backbone's own")
    parser.add_argument('--norm-variance', action='store_true')
    parser.add_argument(
        '--variance-only', action='store_true',
        help='only the norm variances (implies --norm-variance)')
    parser.add_argument('--norm-filter', default=r'attn\.(recovery\.)?norm$')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--markdown', help='write a markdown table here')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    kwargs = dict(arch=args.arch)
    if args.recovery_norm is not None:
        kwargs['recovery_norm_cfg'] = None if args.recovery_norm == 'none' \
            else dict(type=args.recovery_norm)
    models = dict(
        saevit=lambda: build_saevit(**kwargs), resnet18=ResNet18Stages)
    rows = []
    for batch in [] if args.variance_only else args.batch:
        for name in args.dtypes:
            errors = {m: [] for m in models}
            for seed in args.seeds:  # the models interleaved, seed by seed
                for model_name, build in models.items():
                    errors[model_name].append(
                        grad_error(build, batch, args.size, DTYPES[name],
                                   seed))
            ratios = [s / r for s, r in zip(errors['saevit'],
                                            errors['resnet18'])]
            rows.append(dict(batch=batch, dtype=name, **errors,
                             ratio_median=statistics.median(ratios),
                             ratio_max=max(ratios)))
            print(f'batch {batch} {name}: SAEViT-{args.arch} '
                  + ' '.join(f'{e:.3g}' for e in errors['saevit'])
                  + ' | ResNet-18 '
                  + ' '.join(f'{e:.3g}' for e in errors['resnet18'])
                  + f' | ratio median {rows[-1]["ratio_median"]:.2f} '
                  f'max {rows[-1]["ratio_max"]:.2f}', flush=True)
    result = dict(settings=vars(args), rows=rows)
    if args.norm_variance or args.variance_only:
        variances = {}
        for batch in args.batch:
            torch.manual_seed(0)
            variances[batch] = norm_variance(
                build_saevit(**kwargs), torch.randn(batch, 3, *args.size),
                args.norm_filter)
            values = sorted(variances[batch].values())
            if values:
                print(f'batch {batch}: median variance entering the norms: '
                      f'{values[0]:.2g} .. {values[-1]:.2g}')
        result['norm_variance'] = variances
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    if args.markdown:
        command = 'python tools/analysis_tools/amp_grad_error.py ' + ' '.join(
            sys.argv[1:] if argv is None else argv)
        with open(args.markdown, 'w') as f:
            f.write(markdown(result, command))
    return result


if __name__ == '__main__':
    main()
