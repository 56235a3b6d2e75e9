"""Deployment helpers: BatchNorm folding and ONNX export."""
from .fuse import (find_conv_bn_pairs, fold_bn_into_next_conv_,
                   fold_pre_norms, fuse_conv_bn_, switch_to_deploy)
from .onnx_export import check_onnx, export_onnx

__all__ = [
    'find_conv_bn_pairs', 'fold_bn_into_next_conv_', 'fold_pre_norms',
    'fuse_conv_bn_', 'switch_to_deploy', 'export_onnx', 'check_onnx'
]
