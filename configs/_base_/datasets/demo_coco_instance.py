# The synthetic COCO-layout demo data (demo_coco_detection.py) with masks:
# what mmdet's coco_instance.py adds to its coco_detection.py (masks loaded,
# the segm metric).
_base_ = './demo_coco_detection.py'

train_pipeline, test_pipeline = ([
    dict(step, with_mask=True) if step.type == 'LoadAnnotations' else step
    for step in pipeline
] for pipeline in (_base_.train_pipeline, _base_.test_pipeline))
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
