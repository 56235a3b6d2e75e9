"""Deployment: the inference form of any model and ONNX export.

``SAEViT.switch_to_deploy()`` switches the backbone itself (and
``SAEViT(deploy=True)`` builds that form);
:func:`switch_to_deploy` does it for any model that contains one (or none:
a peer's BatchNorms are folded all the same);
:func:`reparameterize_checkpoint` turns a checkpoint of any config into one
of that form.
"""
from ..models.utils.fuse import (find_conv_bn_pairs, fold_bn_into_next_conv_,
                                 fold_conv_bn_pairs, fuse_conv_bn_,
                                 switch_to_deploy)
from .onnx_export import check_onnx, export_onnx
from .reparameterize import build_model, reparameterize_checkpoint

__all__ = [
    'find_conv_bn_pairs', 'fold_bn_into_next_conv_', 'fold_conv_bn_pairs',
    'fuse_conv_bn_', 'switch_to_deploy', 'export_onnx', 'check_onnx',
    'build_model', 'reparameterize_checkpoint'
]
