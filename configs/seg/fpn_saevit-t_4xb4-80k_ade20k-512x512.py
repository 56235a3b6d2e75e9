# Semantic FPN with a SAEViT-T backbone, ADE20K 512x512, 80k iterations,
# 4 GPUs x 4 images. AdamW lr 2e-4, wd 1e-4, poly decay (power 0.9): the
# PVT / PoolFormer recipe for Semantic FPN.
_base_ = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['saevit_mm'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='SAEViT',
        arch='t',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        # SAA delegate bound per stage: 2048, so that ADE20K test images
        # (short side 512, up to ~512x900) sample the same cells as the
        # 512x512 training crops; see the README's "Resolution-adaptive
        # sampling".
        max_delegates=2048,
        # Backbone weights: set model.backbone.init_cfg.checkpoint (with
        # --cfg-options or in a child config) to a file written by
        # tools/model_converters/cls_to_backbone.py or to a classification
        # checkpoint of the same arch (configs/cls). None: SAEViT's own init.
        init_cfg=dict(type='Pretrained', checkpoint=None, prefix='backbone.')),
    neck=dict(in_channels=[40, 80, 192, 384]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
param_scheduler = [
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=0.0,
        begin=0,
        end=80000,
        by_epoch=False)
]
train_cfg = dict(max_iters=80000, val_interval=8000)
default_hooks = dict(checkpoint=dict(interval=8000))
