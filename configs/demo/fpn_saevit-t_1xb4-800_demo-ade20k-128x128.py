# Demo: configs/seg/fpn_saevit-t_4xb4-80k_ade20k-512x512.py unchanged but for
# the data (root and classes of the ADE20K-layout demo set written by
# tools/misc/make_demo_data.py; mmseg's ADE20KDataset takes only ADE20K class
# names, so BaseSegDataset with the ADE20K settings reads it), the schedule
# length, the image scale and BN instead of SyncBN (CPU). Same transforms,
# same recipe, same IoUMetric. SAEVIT_DEMO_DATA (default data/demo) is the
# root the demo data was written to.
_base_ = '../seg/fpn_saevit-t_4xb4-80k_ade20k-512x512.py'

data_root = '{{$SAEVIT_DEMO_DATA:data/demo}}/ADEChallengeData2016'
# classes and colours of the demo data (tools/misc/demo_data/spec.py;
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

norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(norm_cfg=norm_cfg, num_classes=num_classes))

# Schedule: 800 iterations, validation and checkpoint at the end.
max_iters = 800
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=0.0,
        begin=0,
        end=max_iters,
        by_epoch=False)
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
