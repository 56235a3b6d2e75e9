"""The synthetic demo data: the layouts the demo configs read, determinism,
annotations that agree with the pixels, and loading through the hosts."""
import hashlib
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from demo_data import (CLS_CLASSES, DET_CLASSES, MANIFEST, SEG_CLASSES,
                       DemoDataSpec, classification_scene, label_map,
                       make_demo_data, mask_to_polygons, metainfo,
                       multi_object_scene)
from make_demo_data import main as make_demo_data_cli

TINY = DemoDataSpec.tiny()
CONFIGS = Path(__file__).parents[1] / 'configs' / 'demo'


def file_hashes(root: Path) -> dict:
    return {
        p.relative_to(root).as_posix():
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob('*')) if p.is_file()
    }


@pytest.fixture(scope='module')
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('demo')
    make_demo_data(root, seed=0, spec=TINY)
    return root


def coco(demo: Path, split: str) -> dict:
    return json.loads((demo / 'coco' / 'annotations' /
                       f'instances_{split}2017.json').read_text())


def test_imagenet_layout(demo):
    root = demo / 'imagenet'
    assert tuple((root / 'meta' / 'classes.txt').read_text().split()) == \
        CLS_CLASSES
    for split, per_class in (('train', TINY.cls.train), ('val', TINY.cls.val)):
        lines = (root / 'meta' / f'{split}.txt').read_text().splitlines()
        labels = Counter(int(line.split()[1]) for line in lines)
        assert labels == {i: per_class for i in range(len(CLS_CLASSES))}
        for line in lines:
            rel, label = line.split()
            assert (root / split / rel).is_file() and rel.endswith('.JPEG')
            if split == 'train':  # folder order = label order
                assert rel.split('/')[0] == f'n{int(label):08d}'
            else:
                assert '/' not in rel


def test_coco_layout(demo):
    ids = []
    for split, count in (('train', TINY.det.train), ('val', TINY.det.val)):
        data = coco(demo, split)
        assert len(data['images']) == count
        assert [c['name'] for c in data['categories']] == list(DET_CLASSES)
        assert [c['id'] for c in data['categories']] == [1, 2, 3, 4, 5]
        for image in data['images']:
            decoded = cv2.imread(
                str(demo / 'coco' / f'{split}2017' / image['file_name']))
            assert decoded.shape == (image['height'], image['width'], 3)
        ids += [image['id'] for image in data['images']]
    assert len(set(ids)) == len(ids)


def test_ade20k_layout_and_labels(demo):
    root, seen = demo / 'ADEChallengeData2016', Counter()
    for folder, count in (('training', TINY.seg.train), ('validation',
                                                         TINY.seg.val)):
        images = sorted((root / 'images' / folder).glob('ADE_*.jpg'))
        labels = sorted((root / 'annotations' / folder).glob('ADE_*.png'))
        assert [p.stem for p in images] == [p.stem for p in labels]
        assert len(images) == count
        for image, label in zip(images, labels):
            seg = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
            assert seg.dtype == np.uint8 and seg.ndim == 2
            assert seg.shape == cv2.imread(str(image)).shape[:2]
            assert seg.max() <= len(SEG_CLASSES)
            assert (seg == 0).mean() < 0.15  # dense: only clutter is 0
            seen.update(np.unique(seg).tolist())
    assert {1, 2} <= set(seen) and len(set(seen) - {0, 1, 2}) >= 3


def test_image_sides_are_never_multiples_of_32(demo):
    sides = [
        side for path in demo.rglob('*') if path.suffix in ('.jpg', '.JPEG')
        for side in cv2.imread(str(path)).shape[:2]
    ]
    assert len(sides) > 100 and all(side % 32 for side in sides)


def test_same_seed_same_bytes_other_seed_differs(demo, tmp_path):
    again = make_demo_data(tmp_path / 'again', seed=0, spec=TINY)
    other = make_demo_data(tmp_path / 'other', seed=1, spec=TINY)
    for task, root in again.items():
        reference = file_hashes(demo / root.name)
        assert file_hashes(root) == reference
        changed = file_hashes(other[task])
        assert all(changed[k] != v for k, v in reference.items()
                   if k.endswith(('.jpg', '.JPEG')))


def test_rerun_skips_new_params_regenerate_foreign_dirs_stay(tmp_path, capsys):
    argv = ['--out', str(tmp_path), '--tasks', 'seg', '--tiny']
    make_demo_data_cli(argv)
    stamp = (tmp_path / 'ADEChallengeData2016' / MANIFEST).stat().st_mtime_ns
    make_demo_data_cli(argv)
    out = capsys.readouterr().out.splitlines()
    assert '(generated)' in out[0] and '(up to date)' in out[1]
    assert (tmp_path / 'ADEChallengeData2016' /
            MANIFEST).stat().st_mtime_ns == stamp
    make_demo_data_cli([*argv, '--seed', '1'])
    assert json.loads((tmp_path / 'ADEChallengeData2016' /
                       MANIFEST).read_text())['seed'] == 1
    assert not list(tmp_path.glob('.*partial'))
    (tmp_path / 'coco').mkdir()
    with pytest.raises(FileExistsError, match='not made by the demo'):
        make_demo_data(tmp_path, tasks=['det'], spec=TINY)
    with pytest.raises(ValueError, match="allowed tasks are \\['cls'"):
        make_demo_data(tmp_path, tasks=['pose'])
    with pytest.raises(ValueError, match='seed must be an int >= 0'):
        make_demo_data(tmp_path, seed=-1)


def test_coco_annotations_agree_with_their_masks(demo):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    api = COCO(str(demo / 'coco' / 'annotations' / 'instances_train2017.json'))
    for image_id in api.getImgIds():
        anns = api.loadAnns(api.getAnnIds(imgIds=[image_id]))
        masks = [api.annToMask(a).astype(bool) for a in anns]
        assert np.sum(masks, axis=0).max() == 1  # occlusion is resolved
        for ann, mask in zip(anns, masks):
            ys, xs = np.nonzero(mask)
            assert ann['bbox'] == [
                xs.min(),
                ys.min(),
                xs.max() + 1 - xs.min(),
                ys.max() + 1 - ys.min()
            ]
            assert ann['area'] == mask.sum() and ann['iscrowd'] == 0
    for index in range(6):  # polygons give back exactly the visible pixels
        rng = np.random.default_rng([7, index])
        scene = multi_object_scene(rng, 161, 203)
        for k in range(len(scene.kinds)):
            rle = mask_utils.frPyObjects(
                mask_to_polygons(scene.owner == k), 161, 203)
            np.testing.assert_array_equal(
                mask_utils.decode(mask_utils.merge(rle)), scene.owner == k)


def test_occluded_objects_stay_visible_and_hole_free():
    for index in range(10):
        scene = multi_object_scene(
            np.random.default_rng([11, index]), 177, 211)
        for k, (pixels, min_visible) in enumerate(scene.full_pixels):
            visible = (scene.owner == k).astype(np.uint8)
            assert visible.sum() >= min_visible * pixels
            _, tree = cv2.findContours(visible, cv2.RETR_CCOMP,
                                       cv2.CHAIN_APPROX_SIMPLE)
            assert (tree[0, :, 3] < 0).all()


def test_seg_labels_follow_the_documented_convention():
    """PNG value ``v > 0`` is ``SEG_CLASSES[v - 1]``; 0 is clutter."""
    for index in range(6):
        scene = multi_object_scene(np.random.default_rng([5, index]), 150, 190)
        labels = label_map(scene)
        for k, kind in enumerate(scene.kinds):
            assert np.unique(labels[scene.owner == k]).tolist() == [
                SEG_CLASSES.index(kind) + 1
            ]
        stuff = scene.owner < 0
        assert (labels[stuff & scene.clutter] == 0).all()
        free = stuff & ~scene.clutter
        np.testing.assert_array_equal(labels[free] == 1, scene.is_sky[free])
        assert set(labels[free].tolist()) <= {1, 2}


@pytest.mark.parametrize('label', range(len(CLS_CLASSES)))
def test_classification_label_is_the_dominant_shape(label):
    for index in range(3):
        scene = classification_scene(
            np.random.default_rng([2, label, index]), 80, 97, label)
        visible = [(scene.owner == k).sum() for k in range(len(scene.kinds))]
        assert scene.kinds[0] == CLS_CLASSES[label]
        assert visible[0] == max(visible)
        assert visible[0] >= 0.8 * scene.full_pixels[0][0]
        assert CLS_CLASSES[label] not in scene.kinds[1:]


@pytest.mark.parametrize('config,task', [
    ('saevit-t_1xb16-5e_demo-in1k-64px.py', 'cls'),
    ('retinanet_saevit-t_fpn_1xb2-4e_demo-coco.py', 'det'),
    ('mask-rcnn_saevit-t_fpn_1xb2-4e_demo-coco.py', 'det'),
    ('fpn_saevit-t_1xb4-800_demo-ade20k-128x128.py', 'seg'),
    ('upernet_saevit-t_1xb4-400_demo-ade20k-128x128.py', 'seg'),
])
def test_demo_configs_name_the_generated_classes(config, task):
    """The configs spell the classes out (a config must not import the
    tools): the generator's, in its order and colours."""
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIGS / config)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        written = cfg[loader].dataset.metainfo
        assert tuple(written['classes']) == metainfo(task)['classes']
        assert [tuple(c) for c in written['palette']] == \
            metainfo(task)['palette']


@pytest.mark.cls
def test_mmpretrain_imagenet_loads_demo(demo):
    datasets = pytest.importorskip('mmpretrain.datasets')
    root = str(demo / 'imagenet')
    for split, per_class in (('train', TINY.cls.train), ('val', TINY.cls.val)):
        dataset = datasets.ImageNet(
            data_root=root, split=split, classes=f'{root}/meta/classes.txt')
        assert len(dataset) == per_class * len(CLS_CLASSES)
        assert dataset.CLASSES == CLS_CLASSES


@pytest.mark.det
def test_mmdet_coco_loads_demo_and_gt_scores_full_map(demo):
    pytest.importorskip('mmdet.datasets')
    import torch
    from mmdet.datasets import CocoDataset
    from mmdet.evaluation import CocoMetric
    from mmengine.registry import DefaultScope
    ann_file = demo / 'coco' / 'annotations' / 'instances_val2017.json'
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='PackDetInputs', meta_keys=('img_id', 'ori_shape'))
    ]
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = CocoDataset(
            data_root=str(demo / 'coco'),
            ann_file='annotations/instances_val2017.json',
            data_prefix=dict(img='val2017/'),
            metainfo=dict(classes=DET_CLASSES),
            test_mode=True,
            pipeline=pipeline)
        metric = CocoMetric(ann_file=str(ann_file), metric=['bbox', 'segm'])
        metric.dataset_meta = dataset.metainfo
        for index in range(len(dataset)):
            sample = dataset[index]['data_samples']
            gt = sample.gt_instances
            metric.process({}, [
                dict(
                    img_id=sample.img_id,
                    ori_shape=sample.ori_shape,
                    pred_instances=dict(
                        bboxes=gt.bboxes.tensor,
                        scores=torch.ones(len(gt)),
                        labels=gt.labels,
                        masks=torch.from_numpy(
                            gt.masks.to_ndarray().astype(bool))))
            ])
        results = metric.evaluate(len(dataset))
    assert len(dataset) == TINY.det.val
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/segm_mAP'] == pytest.approx(1.0)


@pytest.mark.seg
def test_mmseg_reads_the_label_maps_with_ade_settings(demo):
    pytest.importorskip('mmseg.datasets')
    from mmengine.registry import DefaultScope
    from mmseg.datasets import BaseSegDataset
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = BaseSegDataset(
            data_root=str(demo / 'ADEChallengeData2016'),
            data_prefix=dict(
                img_path='images/validation',
                seg_map_path='annotations/validation'),
            img_suffix='.jpg',
            seg_map_suffix='.png',
            reduce_zero_label=True,
            metainfo=metainfo('seg'),
            pipeline=[dict(type='LoadAnnotations')])
        for index in range(len(dataset)):
            item = dataset[index]
            png = cv2.imread(item['seg_map_path'], cv2.IMREAD_UNCHANGED)
            expected = np.where(png == 0, 255, png.astype(np.int64) - 1)
            np.testing.assert_array_equal(item['gt_seg_map'], expected)
    assert len(dataset) == TINY.seg.val
