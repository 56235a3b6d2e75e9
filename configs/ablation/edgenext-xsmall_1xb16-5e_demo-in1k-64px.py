# Peer arm: the classification demo recipe with mmpretrain's EdgeNeXt-xsmall
# backbone (arguments of mmpretrain's configs/_base_/models/edgenext/
# edgenext-xsmall.py). It pools before its final norm, so it replaces the
# neck as its own config does; the head takes its 192 channels. Nothing else
# changes (tests/test_ablation.py checks).
_base_ = '../demo/saevit-t_1xb16-5e_demo-in1k-64px.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.EdgeNeXt',
        arch='xsmall',
        out_indices=(3, ),
        drop_path_rate=0.1,
        gap_before_final_norm=True),
    neck=None,
    head=dict(in_channels=192))
