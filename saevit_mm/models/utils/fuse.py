"""Fold BatchNorm into the convolution next to it, for inference.

:func:`fold_conv_bn_pairs` finds the conv -> BN pairs from the **data flow**
of one probe forward pass, not from the order in which modules are
registered. mmcv's ``fuse_conv_bn`` pairs a BN with the ``nn.Conv2d``
registered just before it, which is wrong when a forward applies something in
between (``bn(act(conv(x)))``) or feeds the conv output to a second consumer,
and it skips ``nn.ConvTranspose2d``. Here a pair is fused only when, during
the probe pass:

* the BN's input tensor *is* the output tensor of a convolution (no op in
  between, not even a reshape);
* that conv and that BN each ran exactly once (a shared module is left alone);
* the conv output has no consumer other than the BN in the autograd graph;
* the BN uses running statistics (``track_running_stats=True``) and is in
  eval mode.

A BN is any batch norm of
:class:`~saevit_mm.models.utils.backbone_utils.AnyBatchNorm`: torch's
``BN``/``SyncBN`` and mmcv's ``MMSyncBN`` (in eval mode all of them compute
the same affine map of the running statistics). The folded conv gets
``weight * gamma / sqrt(var + eps)`` and a bias; the BN is replaced by
``nn.Identity``. Parameters are modified in place.

:func:`fold_bn_into_next_conv_` folds a BatchNorm *in front of* a
convolution into its input side; the caller promises that the convolution
sees no zero padding (the data flow cannot tell).

SAEViT's layers fold their own norms by structure (``switch_to_deploy`` of
each layer), with :func:`check_foldable_bn` and :func:`ensure_bias_`; the
data-flow pass serves any other model.

:func:`switch_to_deploy` puts any model in its inference form: its conv -> BN
pairs folded, then the modules that have a deploy form switched (the
mmpretrain convention of re-parameterisable backbones:
``module.switch_to_deploy()``).
"""
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

from .backbone_utils import is_batch_norm

__all__ = [
    'find_conv_bn_pairs', 'fuse_conv_bn_', 'fold_conv_bn_pairs',
    'fold_bn_into_next_conv_', 'is_foldable_bn', 'check_foldable_bn',
    'ensure_bias_', 'switch_to_deploy'
]


def _autograd_nodes(roots: Iterable[torch.Tensor]) -> Dict[object, int]:
    """Count how many edges of the autograd graph point at each node."""
    in_degree: Dict[object, int] = {}
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    seen: Set[object] = set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            if child is None:
                continue
            in_degree[child] = in_degree.get(child, 0) + 1
            stack.append(child)
    return in_degree


def _flatten_tensors(obj: object) -> List[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _flatten_tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _flatten_tensors(item)]
    return []


def find_conv_bn_pairs(model: nn.Module,
                       example_input: torch.Tensor) -> List[Tuple[str, str]]:
    """Return ``(conv_name, bn_name)`` pairs that are safe to fuse.

    Args:
        model: The model, in eval mode.
        example_input: A probe input; its values do not matter, its shape
            must be one the model accepts.

    Returns:
        Qualified module names of each conv and the BN that consumes only it,
        in forward order.
    """
    convs = {m: n for n, m in model.named_modules() if isinstance(m, _ConvNd)}
    bns = {m: n for n, m in model.named_modules() if is_batch_norm(m)}
    calls: Dict[nn.Module, int] = {}
    # id(output) -> (conv, output, its autograd node, its version counter);
    # the reference to ``output`` keeps its ``id`` unique during the pass
    conv_out: Dict[int, Tuple[nn.Module, torch.Tensor, object, int]] = {}
    candidates: List[Tuple[nn.Module, nn.Module, object]] = []

    def conv_hook(module, _inputs, output):
        calls[module] = calls.get(module, 0) + 1
        conv_out[id(output)] = (module, output, output.grad_fn,
                                output._version)

    def bn_pre_hook(module, inputs):
        calls[module] = calls.get(module, 0) + 1
        hit = conv_out.get(id(inputs[0]))
        # same object, not modified in place since the conv produced it
        if (hit is not None and hit[1] is inputs[0]
                and inputs[0]._version == hit[3]
                and inputs[0].grad_fn is hit[2]):
            candidates.append((hit[0], module, hit[2]))

    handles = [m.register_forward_hook(conv_hook) for m in convs]
    handles += [m.register_forward_pre_hook(bn_pre_hook) for m in bns]
    try:
        with torch.enable_grad():
            # the probe input needs grad so that the autograd graph exists
            # even when every parameter is frozen
            probe = example_input.detach().clone().requires_grad_(True)
            outputs = _flatten_tensors(model(probe))
    finally:
        for handle in handles:
            handle.remove()
    in_degree = _autograd_nodes(outputs)

    pairs = []
    for conv, bn, node in candidates:
        if calls.get(conv) != 1 or calls.get(bn) != 1:
            continue
        if not (bn.track_running_stats and bn.running_mean is not None):
            continue
        if node is None or in_degree.get(node, 0) != 1:
            continue
        pairs.append((convs[conv], bns[bn]))
    return pairs


@torch.no_grad()
def fuse_conv_bn_(conv: _ConvNd, bn: nn.Module) -> None:
    """Fold ``bn`` (eval statistics) into ``conv`` in place.

    Args:
        conv: A convolution or transposed convolution; it gets a bias if it
            had none.
        bn: The batch norm applied directly to the conv output.
    """
    scale, shift = _bn_affine(bn)
    weight = conv.weight
    if isinstance(conv, _ConvTransposeNd):
        # weight layout: (in, out // groups, *k); output channel of
        # (group g, column j) is g * (out // groups) + j
        groups = conv.groups
        shape = (groups, weight.shape[0] // groups, weight.shape[1])
        view = weight.view(*shape, *weight.shape[2:])
        scale_view = scale.view(groups, 1, shape[2],
                                *([1] * (weight.dim() - 2)))
        weight.copy_((view * scale_view).view_as(weight))
    else:
        weight.mul_(scale.view(-1, *([1] * (weight.dim() - 1))))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
    _set_bias(conv, bias * scale + shift)


def _bn_affine(bn: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` with ``bn(x) = a * x + b`` per channel (eval statistics)."""
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.affine else torch.ones_like(std)
    beta = bn.bias if bn.affine else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn.running_mean * scale


def _set_bias(conv: _ConvNd, bias: torch.Tensor) -> None:
    """Give ``conv`` this bias, adding a parameter if it had none."""
    if conv.bias is None:
        conv.bias = nn.Parameter(bias.to(conv.weight.dtype))
    else:
        conv.bias.copy_(bias)


@torch.no_grad()
def fold_bn_into_next_conv_(bn: nn.Module, conv: _ConvNd) -> None:
    """Fold ``bn`` (eval statistics) into the input side of ``conv``.

    ``conv(bn(x)) == conv'(x)`` with ``bn(x) = a * x + b`` per channel:
    ``weight' = weight * a`` on the input channels and ``bias' = bias +
    sum(weight * b)``. Exact only when ``conv`` sees no zero padding (the
    caller's promise; see the module docstring).

    Args:
        bn: The norm whose output only ``conv`` reads.
        conv: A (grouped) ``Conv2d`` with ``bn.num_features`` inputs; it
            gets a bias if it had none.
    """
    if isinstance(conv, _ConvTransposeNd):
        raise TypeError('fold_bn_into_next_conv_ folds into a convolution, '
                        f'not a {type(conv).__name__}.')
    if conv.in_channels != bn.num_features:
        raise ValueError(f'{type(conv).__name__} has {conv.in_channels} input '
                         f'channels, the norm {bn.num_features}.')
    scale, shift = _bn_affine(bn)
    weight = conv.weight  # (out, in // groups, *k)
    groups, out = conv.groups, weight.shape[0]
    # the input channel each (output, kernel input) pair reads
    index = (torch.arange(out, device=weight.device) //
             (out // groups))[:, None] * weight.shape[1] + torch.arange(
                 weight.shape[1], device=weight.device)
    expand = (out, weight.shape[1]) + (1, ) * (weight.dim() - 2)
    bias = conv.bias if conv.bias is not None else torch.zeros(
        out, device=weight.device, dtype=weight.dtype)
    new_bias = bias + (weight * shift[index].view(expand)).flatten(1).sum(1)
    weight.mul_(scale[index].view(expand))
    _set_bias(conv, new_bias)


def is_foldable_bn(module: nn.Module) -> bool:
    """A batch norm in eval mode with running statistics: an affine map."""
    return (is_batch_norm(module) and not module.training
            and module.track_running_stats and module.running_mean is not None)


def check_foldable_bn(norm: nn.Module, where: str) -> None:
    """Raise RuntimeError unless ``norm`` folds into a convolution.

    Args:
        norm: The norm to fold.
        where: Its qualified name, for the message (``'norm1'``,
            ``'stages.0.blocks.0.norm1'``).
    """
    if is_foldable_bn(norm):
        return
    mode = ' in training mode' if getattr(norm, 'training', False) else ''
    raise RuntimeError(
        'The deploy form folds each norm into a convolution, which needs a '
        'BatchNorm (BN, SyncBN, MMSyncBN) in eval mode with running '
        f'statistics; {where} is a {type(norm).__name__}{mode}.')


def ensure_bias_(conv: _ConvNd) -> None:
    """Give ``conv`` a zero bias if it has none (a norm folds into it)."""
    if conv.bias is None:
        _set_bias(conv, conv.weight.new_zeros(conv.out_channels))


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition('.')
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _default_probe(model: nn.Module,
                   size: Sequence[int]) -> Optional[torch.Tensor]:
    first = next((m for m in model.modules() if isinstance(m, _ConvNd)), None)
    param = next(model.parameters(), None)
    if first is None or param is None:
        return None
    return torch.randn(
        1, first.in_channels, *size, device=param.device, dtype=param.dtype)


def fold_conv_bn_pairs(model: nn.Module,
                       example_input: Optional[torch.Tensor] = None,
                       probe_size: Sequence[int] = (224, 224)) -> List[str]:
    """Fold every safe conv -> BN pair of ``model`` (module docstring).

    Args:
        model: The model, in eval mode.
        example_input: The probe input for the data-flow pass. Defaults to
            ``None``: a ``1 x C x probe_size`` random tensor, where ``C`` is
            the ``in_channels`` of the first convolution.
        probe_size: Spatial size of the default probe. Defaults to
            ``(224, 224)`` (some models accept only their training size).

    Returns:
        Names of the folded BN layers (now ``nn.Identity``), in forward
        order.
    """
    if example_input is None:
        example_input = _default_probe(model, probe_size)
    if example_input is None:  # a model without convolutions
        return []
    pairs = find_conv_bn_pairs(model, example_input)
    for conv_name, bn_name in pairs:
        fuse_conv_bn_(
            model.get_submodule(conv_name), model.get_submodule(bn_name))
        _set_submodule(model, bn_name, nn.Identity())
    return [bn_name for _, bn_name in pairs]


def switch_to_deploy(
    model: nn.Module,
    example_input: Optional[torch.Tensor] = None,
    probe_size: Sequence[int] = (224, 224)
) -> List[str]:
    """Put ``model`` (a backbone, a whole classifier, a peer) in eval mode
    and in its inference form.

    Every safe conv -> BN pair is folded first (:func:`fold_conv_bn_pairs`);
    then every outermost submodule with a ``switch_to_deploy()`` method (an
    ``SAEViT`` backbone, a RepVGG-style block) switches itself.

    Args:
        model: Any module.
        example_input: The probe input (see :func:`fold_conv_bn_pairs`).
        probe_size: Spatial size of the default probe. Defaults to
            ``(224, 224)``.

    Returns:
        Names of the BN layers folded by the data-flow pass (now
        ``nn.Identity``), in forward order.
    """
    model.eval()
    folded = fold_conv_bn_pairs(model, example_input, probe_size)
    switched: List[str] = []
    for name, module in model.named_modules():
        inside = any(s == '' or name.startswith(f'{s}.') for s in switched)
        if not inside and callable(getattr(module, 'switch_to_deploy', None)):
            module.switch_to_deploy()
            switched.append(name)
    return folded
