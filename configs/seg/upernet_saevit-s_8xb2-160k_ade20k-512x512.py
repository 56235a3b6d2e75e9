# UperNet with a SAEViT-S backbone, ADE20K 512x512: the SAEViT-T recipe.
_base_ = './upernet_saevit-t_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        # weights: model.backbone.init_cfg.checkpoint, a file of the small
        # arch (README, "How to give the backbone weights")
        arch='s'),
    decode_head=dict(in_channels=[48, 128, 256, 512]),
    # stage 2, as in the SAEViT-T base (auxiliary_head.in_index=2)
    auxiliary_head=dict(in_channels=256))
