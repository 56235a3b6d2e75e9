# Semantic FPN with a SAEViT-S backbone, ADE20K 512x512: the SAEViT-T recipe.
_base_ = './fpn_saevit-t_4xb4-80k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        # weights: model.backbone.init_cfg.checkpoint, a file of the small
        # arch (README, "How to give the backbone weights")
        arch='s'),
    neck=dict(in_channels=[48, 128, 256, 512]))
