# Dense peer arm: the Semantic FPN demo recipe with mmpretrain's
# MobileViT-x_small backbone (the classification arm's arguments; the outputs
# of its layers at strides 4, 8, 16 and 32, the last one after its 1x1
# expansion); the neck takes their channels. Nothing else changes
# (tests/test_ablation.py checks).
# The backbone starts from a classifier of the same backbone, which is
# required (mmengine's Pretrained init takes no None):
# --cfg-options model.backbone.init_cfg.checkpoint=<classifier .pth>, as
# tools/analysis_tools/ablation.py passes it.
_base_ = '../demo/fpn_saevit-t_1xb4-800_demo-ade20k-128x128.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.MobileViT',
        arch='x_small',
        out_indices=(1, 2, 3, 4),
        init_cfg=dict(type='Pretrained', checkpoint=None, prefix='backbone.')),
    neck=dict(in_channels=[48, 64, 80, 384]))
