# Peer arm: the classification demo recipe with mmpretrain's ResNet-18
# backbone (mmpretrain's configs/_base_/models/resnet18.py); the head takes
# its 512 channels. Nothing else changes (tests/test_ablation.py checks).
_base_ = '../demo/saevit-t_1xb16-5e_demo-in1k-64px.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.ResNet',
        depth=18,
        num_stages=4,
        out_indices=(3, ),
        style='pytorch'),
    head=dict(in_channels=512))
