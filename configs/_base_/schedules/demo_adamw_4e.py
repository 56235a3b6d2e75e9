# The 1x AdamW schedule (adamw_1x.py) cut to 4 epochs for the synthetic demo
# data: warm-up over 50 iterations, lr x0.1 after epoch 3, validation and one
# checkpoint at the end. A run of ~700 steps needs a higher lr, with gradient
# clipping: 5e-4 instead of 1e-4 (1e-4 learns too slowly, 1e-3 diverges).
# With mmdet's runtime, whose hooks the schedule sets.
_base_ = ['./adamw_1x.py', 'mmdet::_base_/default_runtime.py']

max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(
    optimizer=dict(lr=5e-4), clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(_base_.param_scheduler[0], end=50),
    dict(_base_.param_scheduler[1], end=max_epochs, milestones=[3]),
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
