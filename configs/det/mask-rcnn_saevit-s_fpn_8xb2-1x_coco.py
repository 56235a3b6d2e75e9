# Mask R-CNN with a SAEViT-S backbone and FPN, COCO 1x: the SAEViT-T recipe.
_base_ = './mask-rcnn_saevit-t_fpn_8xb2-1x_coco.py'

model = dict(
    backbone=dict(
        # weights: model.backbone.init_cfg.checkpoint, a file of the small
        # arch (README, "How to give the backbone weights")
        arch='s'),
    neck=dict(in_channels=[48, 128, 256, 512]))
