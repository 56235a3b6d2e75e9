# Semantic FPN with a SAEViT-T backbone, ADE20K 512x512, 80k iterations,
# 4 GPUs x 4 images: mmseg's ADE20K data and runtime with the model and the
# AdamW + poly schedule (lr 2e-4) of configs/_base_; 150 classes and the crop
# size set as mmseg's own Semantic FPN config sets them.
_base_ = [
    '../_base_/models/fpn_saevit-t.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', '../_base_/schedules/adamw_80k.py'
]

data_preprocessor = dict(size=_base_.crop_size)
model = dict(
    data_preprocessor=data_preprocessor, decode_head=dict(num_classes=150))
