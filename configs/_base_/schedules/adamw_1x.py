# mmdet's 1x schedule (12 epochs, warm-up over 500 iterations, lr x0.1 after
# epochs 8 and 11) with AdamW, lr 1e-4, weight decay 1e-4, none on norms and
# biases: the PVT recipe for transformer backbones.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
