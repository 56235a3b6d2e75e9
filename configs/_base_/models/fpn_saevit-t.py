# Semantic FPN with a SAEViT-T backbone: mmseg's FPN model, its backbone
# replaced (delegate bound 2048: saevit_backbone.py) and the neck taking
# SAEViT-T's four outputs.
_base_ = ['mmseg::_base_/models/fpn_r50.py', './saevit_backbone.py']

model = dict(
    pretrained=None,
    backbone=dict(
        _base_.saevit_backbone, _delete_=True, arch='t', max_delegates=2048),
    neck=dict(in_channels=[40, 80, 192, 384]))
