# Mask R-CNN with a SAEViT-T backbone: mmdet's Mask R-CNN model, its backbone
# replaced and the FPN taking SAEViT-T's four outputs.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', './saevit_backbone.py']

model = dict(
    backbone=dict(_base_.saevit_backbone, _delete_=True, arch='t'),
    neck=dict(in_channels=[40, 80, 192, 384]))
