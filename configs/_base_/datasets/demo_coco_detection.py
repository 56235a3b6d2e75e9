# Synthetic demo data in the COCO layout, read with mmdet's COCO detection
# settings: shapes on textured scenes (5 classes) written by
# tools/misc/make_demo_data.py, not images of COCO. What changes: the root
# and classes, a smaller image scale and one worker. SAEVIT_DEMO_DATA (default
# data/demo) is the root the demo data was written to.
_base_ = 'mmdet::_base_/datasets/coco_detection.py'

data_root = '{{$SAEVIT_DEMO_DATA:data/demo}}/coco/'
# classes and colours of the demo data (tools/misc/demo_data.py;
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
