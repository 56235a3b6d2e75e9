"""``tools/test.py --tta``: test-time augmentation, each host's way."""
import copy
from typing import Any, Dict, List

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from .host_scope import host_scope

__all__ = ['enable_tta']

#: Host scope -> the ``tta_model`` of its ``tools/test.py --tta`` when the
#: config has none (mmseg's has no default).
_DEFAULT_TTA_MODELS = {
    'mmpretrain':
    dict(type='mmpretrain.AverageClsScoreTTA'),
    'mmdet':
    dict(
        type='DetTTAModel',
        tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                     max_per_img=100)),
}
#: The last step of mmdet's default flip ``tta_pipeline``.
_DET_TTA_PACK = dict(
    type='PackDetInputs',
    meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
               'flip', 'flip_direction'))


def _innermost_dataset(cfg: Config) -> Dict[str, Any]:
    """The test dataset that holds the pipeline (inside dataset wrappers)."""
    loader = cfg.get('test_dataloader')
    dataset = loader.get('dataset') if loader else None
    if dataset is None:
        raise ValueError('--tta: the config has no test_dataloader.dataset; '
                         'test-time augmentation replaces its pipeline.')
    while 'dataset' in dataset and 'pipeline' not in dataset:
        dataset = dataset['dataset']
    return dataset


def _flip_tta_pipeline(test_pipeline: List[Dict[str, Any]],
                       pack: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The test pipeline whose last step becomes flip + no flip, then
    ``pack`` (the default of mmpretrain's and mmdet's ``--tta``)."""
    return [
        *copy.deepcopy(test_pipeline[:-1]),
        dict(
            type='TestTimeAug',
            transforms=[[
                dict(type='RandomFlip', prob=1.),
                dict(type='RandomFlip', prob=0.)
            ], [copy.deepcopy(pack)]])
    ]


def enable_tta(cfg: Config) -> Config:
    """Test with test-time augmentation, each host's way.

    The model becomes ``cfg.tta_model`` wrapping ``cfg.model`` and the test
    dataset's pipeline becomes ``cfg.tta_pipeline``. Where the config lacks
    them, mmpretrain's ``tools/test.py`` uses ``AverageClsScoreTTA`` over a
    horizontal flip and mmdet's ``DetTTAModel`` (NMS 0.5, 100 boxes) over a
    flip, as here; mmseg's has no default, so mmseg configs need both.

    Args:
        cfg: The config, changed in place.

    Returns:
        ``cfg``.

    Raises:
        ValueError: An mmseg config without ``tta_model`` or
            ``tta_pipeline``, a scope of no known host, or no test dataset.
    """
    scope = host_scope(cfg, '--tta')
    dataset = _innermost_dataset(cfg)
    missing = [key for key in ('tta_model', 'tta_pipeline') if key not in cfg]
    if scope == 'mmseg' and missing:
        raise ValueError(
            f'--tta: this mmseg config has no {" and no ".join(missing)}; '
            'mmseg\'s test-time augmentation needs both: tta_model='
            'dict(type=\'SegTTAModel\') (set by '
            'mmseg::_base_/default_runtime.py) and a tta_pipeline with '
            'TestTimeAug (the mmseg::_base_/datasets/ bases have one).')
    if missing:
        print_log(
            f'--tta: the config has no {" and no ".join(missing)}; using '
            f'{scope}\'s default (flip test-time augmentation).',
            logger='current')
    if 'tta_model' not in cfg:
        cfg.tta_model = copy.deepcopy(_DEFAULT_TTA_MODELS[scope])
    if 'tta_pipeline' not in cfg:
        pipeline = dataset['pipeline']
        # mmpretrain packs as the test pipeline does, mmdet adds flip keys
        pack = pipeline[-1] if scope == 'mmpretrain' else _DET_TTA_PACK
        cfg.tta_pipeline = _flip_tta_pipeline(pipeline, pack)
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    dataset['pipeline'] = copy.deepcopy(cfg.tta_pipeline)
    return cfg
