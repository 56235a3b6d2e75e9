"""Building blocks of SAEViT, one concept per module."""
from .act_in_place import act_in_place
from .attention import Attention2d, coarse_tokens
from .block import ATTN_TYPES, FFN_TYPES, SAEViTBlock
from .ciffn import CIFFN
from .conv_norm import ConvNorm
from .dwsconv import DWSConv
from .ffn import ConvFFN
from .grouped_pointwise import GroupedPointwiseConv, channel_shuffle
from .mhsa import MHSA2d
from .saa import SparselyAggregatedAttention
from .stage import SAEViTStage
from .stem import ConvStem, Downsample

__all__ = [
    'act_in_place', 'ATTN_TYPES', 'FFN_TYPES', 'Attention2d', 'coarse_tokens',
    'CIFFN', 'ConvFFN', 'ConvNorm', 'ConvStem', 'Downsample', 'DWSConv',
    'MHSA2d', 'SAEViTBlock', 'SAEViTStage', 'GroupedPointwiseConv',
    'channel_shuffle', 'SparselyAggregatedAttention'
]
