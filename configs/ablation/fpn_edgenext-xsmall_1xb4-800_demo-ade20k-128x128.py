# Dense peer arm: the Semantic FPN demo recipe with mmpretrain's
# EdgeNeXt-xsmall backbone (the classification arm's arguments, four outputs
# and a norm on each instead of pooling); the neck takes its channels.
# Nothing else changes (tests/test_ablation.py checks).
# The backbone starts from a classifier of the same backbone, which is
# required (mmengine's Pretrained init takes no None):
# --cfg-options model.backbone.init_cfg.checkpoint=<classifier .pth>, as
# tools/analysis_tools/ablation.py passes it.
_base_ = '../demo/fpn_saevit-t_1xb4-800_demo-ade20k-128x128.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.EdgeNeXt',
        arch='xsmall',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        gap_before_final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint=None, prefix='backbone.')),
    neck=dict(in_channels=[32, 64, 100, 192]))
