"""Utilities of saevit_mm models: backbone behaviour and FLOP counting.

``checkpoint`` (state-dict conversion) is imported on demand:
``from saevit_mm.models.utils.checkpoint import ...``.
"""
from .backbone_utils import (NORM_LAYERS, check_frozen_stages, freeze_module,
                             is_norm, normalize_out_indices, set_norm_eval)
from .flops import (SDPA_OP, build_flop_analyzer, count_complexity,
                    sdpa_flop_jit)

__all__ = [
    'NORM_LAYERS', 'check_frozen_stages', 'freeze_module', 'is_norm',
    'normalize_out_indices', 'set_norm_eval', 'SDPA_OP',
    'build_flop_analyzer', 'count_complexity', 'sdpa_flop_jit'
]
