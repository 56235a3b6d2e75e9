# Dense peer arm: the Semantic FPN demo recipe with mmpretrain's ResNet-18
# backbone (the classification arm's arguments, four outputs; BN as the demo's
# SAEViT backbone); the neck takes its channels. Nothing else changes
# (tests/test_ablation.py checks).
# The backbone starts from a classifier of the same backbone, which is
# required (mmengine's Pretrained init takes no None):
# --cfg-options model.backbone.init_cfg.checkpoint=<classifier .pth>, as
# tools/analysis_tools/ablation.py passes it.
_base_ = '../demo/fpn_saevit-t_1xb4-800_demo-ade20k-128x128.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.ResNet',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        style='pytorch',
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=None, prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 256, 512]))
