# Mask R-CNN with a SAEViT-T backbone and FPN, COCO 1x (12 epochs), 8 GPUs x 2
# images: mmdet's COCO instance data and runtime with the model and the AdamW
# schedule (lr 1e-4) of configs/_base_.
_base_ = [
    '../_base_/models/mask-rcnn_saevit-t_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/schedules/adamw_1x.py', 'mmdet::_base_/default_runtime.py'
]
