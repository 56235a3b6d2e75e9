# Demo: configs/cls/saevit-t_8xb128-coslr-300e_in1k.py on synthetic data.
# "demo-in1k" names the layout: the data are shapes on textured scenes (10
# classes) that tools/misc/make_demo_data.py writes in the ImageNet layout,
# not a subset of ImageNet-1k. Same model, loss (label smoothing), drop path,
# AdamW + cosine, EMA, gradient clipping, RandomResizedCrop + flip and
# Accuracy metric; the demo data, a 5-epoch schedule and 64-pixel images
# instead of ImageNet-1k, 300 epochs and 224 pixels.
#
# What a 5-epoch run needs beyond that (measurements: docs/demo.md):
# - Mixup, CutMix, RandAugment and RandomErasing off: the 300-epoch
#   recipe's regularisers keep a 5-epoch model near chance;
# - RandomResizedCrop keeps at least 35% of the image instead of 8%: a demo
#   image holds small shapes of other classes, which a tighter crop can
#   isolate under the wrong label;
# - lr 5e-4 with a quarter-epoch warm-up instead of 1e-3 with 5 epochs.
# SAEVIT_DEMO_DATA (default data/demo) is the root the demo data was written
# to.
_base_ = '../cls/saevit-t_8xb128-coslr-300e_in1k.py'

data_root = '{{$SAEVIT_DEMO_DATA:data/demo}}/imagenet'
# classes and colours of the demo data (tools/misc/demo_data.py;
# tests/test_demo_data.py checks they match)
demo_metainfo = dict(
    classes=('ellipse', 'rectangle', 'triangle', 'star', 'hexagon', 'cross',
             'crescent', 'heart', 'arrow', 'ring'),
    palette=[(220, 20, 60), (0, 160, 80), (250, 170, 30), (106, 0, 228),
             (0, 200, 220), (255, 77, 255), (120, 166, 157), (255, 120, 120),
             (60, 60, 200), (160, 160, 0)])
num_classes = len(demo_metainfo['classes'])

# Image scale: 64 instead of 224 (test: resize the short edge to 73, crop 64).
demo_scale = dict(
    RandomResizedCrop=dict(scale=64, crop_ratio_range=(0.35, 1.0)),
    ResizeEdge=dict(scale=73),
    CenterCrop=dict(crop_size=64))
demo_long_schedule_only = ('RandAugment', 'RandomErasing')
train_pipeline = [
    dict(step, **demo_scale.get(step.type, {}))
    for step in _base_.train_pipeline
    if step.type not in demo_long_schedule_only
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
# no batch augmentation (Mixup, CutMix)
model = dict(head=dict(num_classes=num_classes), train_cfg=None)

# Schedule: 5 epochs, a quarter of one for warm-up, validated once at the
# end; the EMA follows the weights within a few iterations (momentum scaled to
# the run).
max_epochs = 5
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=5e-4))
param_scheduler = [
    dict(_base_.param_scheduler[0], end=0.25),
    dict(_base_.param_scheduler[1], begin=0.25, convert_to_iter_based=True),
]
# the recipe's hooks (EMAHook, RandomStateHook), EMA momentum for the run
custom_hooks = [
    dict(hook, momentum=0.1) if hook.type == 'EMAHook' else hook
    for hook in _base_.custom_hooks
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
