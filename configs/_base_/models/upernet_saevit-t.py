# UperNet with a SAEViT-T backbone: mmseg's UperNet model, its backbone
# replaced (delegate bound 2048: saevit_backbone.py) and the heads taking
# SAEViT-T's outputs.
_base_ = ['mmseg::_base_/models/upernet_r50.py', './saevit_backbone.py']

model = dict(
    pretrained=None,
    backbone=dict(
        _base_.saevit_backbone, _delete_=True, arch='t', max_delegates=2048),
    decode_head=dict(in_channels=[40, 80, 192, 384]),
    auxiliary_head=dict(in_channels=192))
