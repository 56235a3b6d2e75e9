# Peer arm: the classification demo recipe with mmpretrain's MobileViT-x_small
# backbone (mmpretrain's configs/_base_/models/mobilevit/mobilevit_xs.py);
# the head takes its 384 channels. Nothing else changes
# (tests/test_ablation.py checks).
_base_ = '../demo/saevit-t_1xb16-5e_demo-in1k-64px.py'

model = dict(
    backbone=dict(_delete_=True, type='mmpretrain.MobileViT', arch='x_small'),
    head=dict(in_channels=384))
