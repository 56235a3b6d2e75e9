# Dense ablation arm: the Semantic FPN demo with CIFFN replaced by a plain 1x1
# conv FFN of the same expansion (ffn_type='ffn', as the classification arm);
# nothing else changes (tests/test_ablation.py checks).
# The backbone starts from the classification arm's classifier, which is
# required (mmengine's Pretrained init takes no None):
# --cfg-options model.backbone.init_cfg.checkpoint=<classifier .pth>, as
# tools/analysis_tools/ablation.py passes it.
_base_ = '../demo/fpn_saevit-t_1xb4-800_demo-ade20k-128x128.py'

model = dict(backbone=dict(ffn_type='ffn'))
