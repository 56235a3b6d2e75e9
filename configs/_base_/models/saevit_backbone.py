# SAEViT as the backbone of the det and seg configs: all four stages
# (strides 4/8/16/32) for an FPN or a decode head. The model bases beside
# this file replace the host's backbone with it and add the arch; what a
# config builds is its model.backbone, so change that (in a child config or
# with --cfg-options model.backbone.<key>=...), not this template.
custom_imports = dict(imports=['saevit_mm'], allow_failed_imports=False)

saevit_backbone = dict(
    type='SAEViT',
    out_indices=(0, 1, 2, 3),
    drop_path_rate=0.1,
    # batch 2 per GPU is too small for BN statistics; on CPU the SyncBN
    # layers become BN (the Runner, or tools/train.py's CPU set-up)
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    # SAA delegate bound per stage, the arch default stated here: at COCO's
    # 800x1333 the cells grow instead of the attention. The seg model bases
    # raise it to 2048, so that ADE20K test images (short side 512, up to
    # ~512x900) sample the same cells as the 512x512 training crops.
    max_delegates=1024,
    # Backbone weights: set model.backbone.init_cfg.checkpoint to a file of
    # the same arch written by tools/model_converters/cls_to_backbone.py, or
    # to a classification checkpoint (configs/cls). None: SAEViT's own init.
    init_cfg=dict(type='Pretrained', checkpoint=None, prefix='backbone.'))
