# Ablation arm: the classification demo with CIFFN's redistribution (the
# channel shuffle) removed (ffn_type='ciffn_no_shuffle'); nothing else changes
# (tests/test_ablation.py checks). Run by tools/analysis_tools/ablation.py.
_base_ = '../demo/saevit-t_1xb16-5e_demo-in1k-64px.py'

model = dict(backbone=dict(ffn_type='ciffn_no_shuffle'))
