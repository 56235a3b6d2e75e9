# Ablation arm: the classification demo with SAA replaced by full multi-head
# attention among all pixels (attn_type='mhsa'); nothing else changes
# (tests/test_ablation.py checks). Run by tools/analysis_tools/ablation.py.
_base_ = '../demo/saevit-t_1xb16-5e_demo-in1k-64px.py'

model = dict(backbone=dict(attn_type='mhsa'))
