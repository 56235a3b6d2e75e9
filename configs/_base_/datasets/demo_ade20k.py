# Synthetic demo data in the ADE20K layout, read with mmseg's ADE20K
# settings: shapes on textured scenes (7 classes) written by
# tools/misc/make_demo_data.py, not images of ADE20K. What changes: the root
# and classes (mmseg's ADE20KDataset takes only ADE20K class names, so
# BaseSegDataset with the ADE20K settings reads them), the image scale and one
# worker. SAEVIT_DEMO_DATA (default data/demo) is the root the demo data was
# written to.
_base_ = 'mmseg::_base_/datasets/ade20k.py'

data_root = '{{$SAEVIT_DEMO_DATA:data/demo}}/ADEChallengeData2016'
# classes and colours of the demo data (tools/misc/demo_data.py;
# tests/test_demo_data.py checks they match)
demo_metainfo = dict(
    classes=('sky', 'ground', 'ellipse', 'rectangle', 'triangle', 'star',
             'cross'),
    palette=[(70, 130, 180), (140, 110, 60), (220, 20, 60), (0, 160, 80),
             (250, 170, 30), (106, 0, 228), (255, 77, 255)])
num_classes = len(demo_metainfo['classes'])
demo_dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=demo_metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)

# Image scale: crops of 128x128 from images resized to (512, 128) instead of
# 512x512 crops from (2048, 512).
crop_size = (128, 128)
demo_scale = dict(
    RandomResize=dict(scale=(512, 128)),
    RandomCrop=dict(crop_size=crop_size),
    Resize=dict(scale=(512, 128)))
train_pipeline = [
    dict(step, **demo_scale.get(step.type, {}))
    for step in _base_.train_pipeline
]
test_pipeline = [
    dict(step, **demo_scale.get(step.type, {}))
    for step in _base_.test_pipeline
]
# one worker: the demo runs this fine-tuning on one core
train_dataloader = dict(
    num_workers=1, dataset=dict(demo_dataset, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1, dataset=dict(demo_dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
