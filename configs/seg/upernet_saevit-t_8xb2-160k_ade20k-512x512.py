# UperNet with a SAEViT-T backbone, ADE20K 512x512, 160k iterations, 8 GPUs x
# 2 images: mmseg's ADE20K data and runtime with the model and the AdamW
# schedule (lr 6e-5, warm-up, linear decay) of configs/_base_; 150 classes
# and the crop size set as mmseg's own UperNet config sets them.
_base_ = [
    '../_base_/models/upernet_saevit-t.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', '../_base_/schedules/adamw_160k.py'
]

data_preprocessor = dict(size=_base_.crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150))
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
