# Demo: configs/cls/saevit-t_8xb128-coslr-300e_in1k.py unchanged but for the
# data (root and classes of the ImageNet-layout demo set written by
# tools/misc/make_demo_data.py), the schedule length and the image scale.
# Same transforms, same recipe, same Accuracy metric. SAEVIT_DEMO_DATA
# (default data/demo) is the root the demo data was written to.
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
train_pipeline = [
    dict(step, **demo_scale.get(step.type, {}))
    for step in _base_.train_pipeline
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
model = dict(head=dict(num_classes=num_classes))

# Schedule: 6 epochs, 1 of warm-up; the EMA follows the weights within a few
# iterations (momentum scaled to the short run).
max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
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
default_hooks = dict(logger=dict(interval=5))
