# Ablation arm: the classification demo with a per-pixel LayerNorm (LN2d, as
# in EdgeViT) on SAA's recovered map instead of no norm; nothing else changes
# (tests/test_ablation.py checks). Run by tools/analysis_tools/ablation.py.
_base_ = '../demo/saevit-t_1xb16-5e_demo-in1k-64px.py'

model = dict(backbone=dict(recovery_norm_cfg=dict(type='LN2d')))
