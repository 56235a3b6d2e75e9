# SAEViT-T on ImageNet-1K: the 300-epoch lightweight-ViT recipe (DeiT-style).
# 8 GPUs x 128 images, AdamW (lr 1e-3 for batch 1024, wd 0.05, no decay on
# norms/biases), 5-epoch linear warm-up then cosine to 1e-5, RandAugment
# (rand-m9-mstd0.5-inc1), random erasing 0.25, Mixup 0.8 / CutMix 1.0,
# label smoothing 0.1, drop path 0.1, EMA of the weights.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['saevit_mm'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='SAEViT', arch='t', out_indices=(3, ), drop_path_rate=0.1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=384,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(lr=1e-3),
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0),
    clip_grad=dict(max_norm=5.0),
)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        end=5,
        convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)

# RandomStateHook: checkpoints hold the random-number states, so --resume
# from an epoch checkpoint repeats the uninterrupted run exactly, given the
# fixed seed below and workers that are not persistent (tools/train.py
# --no-persistent-workers; persistent workers keep states no checkpoint holds)
custom_hooks = [
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
    dict(type='RandomStateHook'),
]
randomness = dict(seed=0)
