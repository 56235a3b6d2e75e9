# Demo: configs/det/mask-rcnn_saevit-t_fpn_8xb2-1x_coco.py
# with the data (root and classes of the COCO-layout demo set written by
# tools/misc/make_demo_data.py), a 4-epoch schedule, a smaller image scale and
# BN instead of SyncBN (CPU). Same model, transforms and CocoMetric (bbox,
# segm).
# The schedule's optimizer settings are those of a short run: AdamW lr 5e-4
# instead of 1e-4, with gradient clipping (measured on the demo data: 1e-4
# learns too slowly for ~700 steps, 1e-3 diverges). SAEVIT_DEMO_DATA (default
# data/demo) is the root the demo data was written to.
_base_ = '../det/mask-rcnn_saevit-t_fpn_8xb2-1x_coco.py'

data_root = '{{$SAEVIT_DEMO_DATA:data/demo}}/coco/'
# classes and colours of the demo data (tools/misc/demo_data/spec.py;
# tests/test_demo_data.py checks they match)
demo_metainfo = dict(
    classes=('ellipse', 'rectangle', 'triangle', 'star', 'cross'),
    palette=[(220, 20, 60), (0, 160, 80), (250, 170, 30), (106, 0, 228),
             (255, 77, 255)])
num_classes = len(demo_metainfo['classes'])

# Image scale: (256, 160) instead of (1333, 800), about the size of the demo
# images (144-256 pixels a side).
demo_scale = (256, 160)
train_pipeline = [
    dict(step, scale=demo_scale) if step.type == 'Resize' else step
    for step in _base_.train_pipeline
]
test_pipeline = [
    dict(step, scale=demo_scale) if step.type == 'Resize' else step
    for step in _base_.test_pipeline
]
# one worker: the demo runs this fine-tuning on one core
train_dataloader = dict(
    num_workers=1,
    dataset=dict(
        data_root=data_root, metainfo=demo_metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        data_root=data_root, metainfo=demo_metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

model = dict(
    backbone=dict(norm_cfg=dict(type='BN', requires_grad=True)),
    roi_head=dict(
        bbox_head=dict(num_classes=num_classes),
        mask_head=dict(num_classes=num_classes)))

# Schedule: 4 epochs, warm-up 50 iterations, lr step at epoch 3, validation
# and checkpoint at the end.
max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(
    optimizer=dict(lr=5e-4), clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[3],
        gamma=0.1)
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
