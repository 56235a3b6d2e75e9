# SAEViT-S on ImageNet-1K: the SAEViT-T recipe with the small arch.
_base_ = './saevit-t_8xb128-coslr-300e_in1k.py'

model = dict(backbone=dict(arch='s'), head=dict(in_channels=512))
