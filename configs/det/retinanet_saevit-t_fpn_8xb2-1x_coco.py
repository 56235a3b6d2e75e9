# RetinaNet with a SAEViT-T backbone and FPN, COCO 1x (12 epochs), 8 GPUs x 2
# images. AdamW lr 1e-4, wd 1e-4 (the PVT recipe for transformer backbones).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['saevit_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='SAEViT',
        arch='t',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        # SAA delegate bound per stage (the arch default, stated here): at
        # 800x1333 the cells grow and attention costs 0.44 instead of 13.6
        # GFLOPs; see the README's "Resolution-adaptive sampling".
        max_delegates=1024,
        # Backbone weights: set model.backbone.init_cfg.checkpoint (with
        # --cfg-options or in a child config) to a file written by
        # tools/model_converters/cls_to_backbone.py or to a classification
        # checkpoint of the same arch (configs/cls). None: SAEViT's own init.
        init_cfg=dict(type='Pretrained', checkpoint=None, prefix='backbone.')),
    neck=dict(in_channels=[40, 80, 192, 384]))

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
