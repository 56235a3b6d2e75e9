# Demo: configs/det/retinanet_saevit-t_fpn_8xb2-1x_coco.py unchanged but for
# the data (root and classes of the COCO-layout demo set written by
# tools/misc/make_demo_data.py), the schedule length, the image scale and BN
# instead of SyncBN (CPU). Same transforms, same recipe, same CocoMetric.
# SAEVIT_DEMO_DATA (default data/demo) is the root the demo data was written
# to.
_base_ = '../det/retinanet_saevit-t_fpn_8xb2-1x_coco.py'
from saevit_mm.demo import metainfo  # noqa: E402  (after _base_)

data_root = '{{$SAEVIT_DEMO_DATA:data/demo}}/coco/'
# mmdet's visualizer takes a palette as a list of (r, g, b) tuples
demo_metainfo = dict(metainfo('det'), palette=list(metainfo('det')['palette']))
num_classes = len(demo_metainfo['classes'])

# Image scale: (320, 192) instead of (1333, 800), the same aspect.
demo_scale = (320, 192)
train_pipeline = [
    dict(step, scale=demo_scale) if step.type == 'Resize' else step
    for step in _base_.train_pipeline
]
test_pipeline = [
    dict(step, scale=demo_scale) if step.type == 'Resize' else step
    for step in _base_.test_pipeline
]
train_dataloader = dict(
    dataset=dict(
        data_root=data_root, metainfo=demo_metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root, metainfo=demo_metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

model = dict(
    backbone=dict(norm_cfg=dict(type='BN', requires_grad=True)),
    bbox_head=dict(num_classes=num_classes))

# Schedule: 3 epochs (fits the demo's 20-minute budget on 2 CPU cores),
# warm-up 50 iterations, lr step at epoch 3.
max_epochs = 3
train_cfg = dict(max_epochs=max_epochs, val_interval=3)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[2],
        gamma=0.1)
]
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=3, max_keep_ckpts=1))
