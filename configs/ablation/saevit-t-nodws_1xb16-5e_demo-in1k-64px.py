# Ablation arm: the classification demo without the DWSConv branch of every
# block (use_dwsconv=False); nothing else changes (tests/test_ablation.py
# checks). Run by tools/analysis_tools/ablation.py.
_base_ = '../demo/saevit-t_1xb16-5e_demo-in1k-64px.py'

model = dict(backbone=dict(use_dwsconv=False))
