# Demo: configs/cls/saevit-t_8xb128-coslr-300e_in1k.py with the data (root
# and classes of the ImageNet-layout demo set written by
# tools/misc/make_demo_data.py), a 5-epoch schedule and 64-pixel images. Same
# model, loss (label smoothing), drop path, AdamW + cosine, EMA, gradient
# clipping, RandomResizedCrop + flip and Accuracy metric.
#
# The one change beyond data, schedule and scale: the four regularisers the
# 300-epoch recipe needs against overfitting -- Mixup, CutMix, RandAugment and
# RandomErasing -- are off. In a 5-epoch run they keep the model at chance
# (measured: 11-17% top-1 on the 10 demo classes after 320-400 iterations
# with any of them on, 38-42% without). SAEVIT_DEMO_DATA (default data/demo)
# is the root the demo data was written to.
_base_ = '../cls/saevit-t_8xb128-coslr-300e_in1k.py'
from saevit_mm.demo import metainfo  # noqa: E402  (after _base_)

data_root = '{{$SAEVIT_DEMO_DATA:data/demo}}/imagenet'
demo_metainfo = metainfo('cls')
num_classes = len(demo_metainfo['classes'])

# Image scale: 64 instead of 224 (test: resize the short edge to 73, crop 64).
demo_scale = dict(
    RandomResizedCrop=dict(scale=64),
    ResizeEdge=dict(scale=73),
    CenterCrop=dict(crop_size=64))
long_schedule_only = ('RandAugment', 'RandomErasing')
train_pipeline = [
    dict(step, **demo_scale.get(step.type, {}))
    for step in _base_.train_pipeline if step.type not in long_schedule_only
]
test_pipeline = [
    dict(step, **demo_scale.get(step.type, {}))
    for step in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(
        data_root=data_root, metainfo=demo_metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(
        data_root=data_root, metainfo=demo_metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
data_preprocessor = dict(num_classes=num_classes)
model = dict(head=dict(num_classes=num_classes), train_cfg=dict(augments=None))

# Schedule: 5 epochs, 1 of warm-up, validated once at the end; the EMA
# follows the weights within a few iterations (momentum scaled to the run).
max_epochs = 5
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        end=1,
        convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1),
]
custom_hooks = [dict(type='EMAHook', momentum=0.1, priority='ABOVE_NORMAL')]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
