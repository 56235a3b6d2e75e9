# UperNet with a SAEViT-S backbone, ADE20K 512x512: the SAEViT-T recipe.
_base_ = './upernet_saevit-t_8xb2-160k_ade20k-512x512.py'

# Backbone weights of the small arch; see the SAEViT-T config.
backbone_checkpoint = None

model = dict(
    backbone=dict(
        arch='s',
        init_cfg=dict(
            _delete_=True,
            type='Pretrained',
            checkpoint=backbone_checkpoint,
            prefix='backbone.') if backbone_checkpoint else None),
    decode_head=dict(in_channels=[56, 112, 224, 448]),
    auxiliary_head=dict(in_channels=224))
