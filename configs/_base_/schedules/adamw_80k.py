# mmseg's 80k-iteration schedule with AdamW, lr 2e-4, weight decay 1e-4 and
# poly decay (power 0.9) to 0: the PVT / PoolFormer recipe for Semantic FPN.
_base_ = 'mmseg::_base_/schedules/schedule_80k.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
param_scheduler = [
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=0.0,
        begin=0,
        end=80000,
        by_epoch=False)
]
