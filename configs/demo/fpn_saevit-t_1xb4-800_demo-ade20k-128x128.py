# Demo: configs/seg/fpn_saevit-t_4xb4-80k_ade20k-512x512.py on synthetic data.
# "demo-ade20k" names the layout: the data are shapes on textured scenes that
# tools/misc/make_demo_data.py writes in the ADE20K layout, not a subset of
# ADE20K. Same model (but BN instead of SyncBN, for CPU), transforms, recipe
# and IoUMetric; the demo data and its scale
# (_base_/datasets/demo_ade20k.py) and 800 iterations instead of ADE20K and
# 80k.
_base_ = [
    '../_base_/models/fpn_saevit-t.py', '../_base_/datasets/demo_ade20k.py',
    'mmseg::_base_/default_runtime.py', '../_base_/schedules/adamw_80k.py'
]

norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(size=_base_.crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(norm_cfg=norm_cfg, num_classes=_base_.num_classes))

# Schedule: 800 iterations, validation and checkpoint at the end.
max_iters = 800
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [dict(_base_.param_scheduler[0], end=max_iters)]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
