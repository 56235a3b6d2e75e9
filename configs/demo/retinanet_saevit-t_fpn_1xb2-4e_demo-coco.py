# Demo: configs/det/retinanet_saevit-t_fpn_8xb2-1x_coco.py on synthetic data.
# "demo-coco" names the layout: the data are shapes on textured scenes that
# tools/misc/make_demo_data.py writes in the COCO layout, not a subset of
# COCO. Same model (but BN instead of SyncBN, for CPU), transforms and
# CocoMetric; the demo data (_base_/datasets/demo_coco_detection.py) and a
# 4-epoch schedule (_base_/schedules/demo_adamw_4e.py) instead of COCO and 1x.
_base_ = [
    '../_base_/models/retinanet_saevit-t_fpn.py',
    '../_base_/datasets/demo_coco_detection.py',
    '../_base_/schedules/demo_adamw_4e.py', 'mmdet::retinanet/retinanet_tta.py'
]

model = dict(
    backbone=dict(norm_cfg=dict(type='BN', requires_grad=True)),
    bbox_head=dict(num_classes=_base_.num_classes))
