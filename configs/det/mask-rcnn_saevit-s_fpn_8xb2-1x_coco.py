# Mask R-CNN with a SAEViT-S backbone and FPN, COCO 1x: the SAEViT-T recipe.
_base_ = './mask-rcnn_saevit-t_fpn_8xb2-1x_coco.py'

# Backbone weights of the small arch; see the SAEViT-T config.
backbone_checkpoint = None

model = dict(
    backbone=dict(
        arch='s',
        init_cfg=dict(
            _delete_=True,
            type='Pretrained',
            checkpoint=backbone_checkpoint,
            prefix='backbone.') if backbone_checkpoint else None),
    neck=dict(in_channels=[56, 112, 224, 448]))
