# Demo: configs/seg/upernet_saevit-t_8xb2-160k_ade20k-512x512.py on synthetic
# data. "demo-ade20k" names the layout: the data are shapes on textured
# scenes that tools/misc/make_demo_data.py writes in the ADE20K layout, not a
# subset of ADE20K. Same model (but BN instead of SyncBN, for CPU),
# transforms, recipe and IoUMetric; the demo data and its scale
# (_base_/datasets/demo_ade20k.py), 4 images a batch and 400 iterations
# instead of ADE20K, 2 images and 160k.
_base_ = [
    '../_base_/models/upernet_saevit-t.py',
    '../_base_/datasets/demo_ade20k.py', 'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/adamw_160k.py'
]

# 4 images a batch (mmseg's ADE20K default), not the recipe's 2
train_dataloader = dict(batch_size=4)
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(size=_base_.crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(norm_cfg=norm_cfg, num_classes=_base_.num_classes),
    auxiliary_head=dict(norm_cfg=norm_cfg, num_classes=_base_.num_classes))

# Schedule: 400 iterations, warm-up 40, validation and checkpoint every 200.
max_iters = 400
train_cfg = dict(max_iters=max_iters, val_interval=200)
param_scheduler = [
    dict(_base_.param_scheduler[0], end=40),
    dict(_base_.param_scheduler[1], begin=40, end=max_iters),
]
default_hooks = dict(
    logger=dict(interval=20), checkpoint=dict(interval=200, max_keep_ckpts=1))
