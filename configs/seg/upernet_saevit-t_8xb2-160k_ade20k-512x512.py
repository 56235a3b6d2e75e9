# UperNet with a SAEViT-T backbone, ADE20K 512x512, 160k iterations, 8 GPUs x
# 2 images. AdamW lr 6e-5, wd 0.01 (none on norms), 1500-iteration linear
# warm-up, then linear (poly, power 1) decay: the Swin / ConvNeXt recipe.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
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
    decode_head=dict(in_channels=[40, 80, 192, 384]),
    auxiliary_head=dict(in_channels=192))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        begin=1500,
        end=160000,
        by_epoch=False),
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
