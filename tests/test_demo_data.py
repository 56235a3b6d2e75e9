"""The demo data generator: layouts, determinism, annotation correctness,
and loading through the hosts' own dataset classes, pipelines and metrics."""
import hashlib
import json
import runpy
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from demo_data import (CLS_CLASSES, DET_CLASSES, MANIFEST, SEG_CLASSES,
                       DemoDataSpec, SplitSpec, make_demo_data, metainfo,
                       generator_digest, read_manifest)
from demo_data.ade20k import label_map
from demo_data.coco import mask_to_polygons
from demo_data.files import image_rng
from demo_data.recipes import classification_scene, multi_object_scene

TOOL = Path(__file__).parents[1] / 'tools' / 'misc' / 'make_demo_data.py'
TINY = DemoDataSpec.tiny()


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


def read_coco(demo: Path, split: str) -> dict:
    path = demo / 'coco' / 'annotations' / f'instances_{split}2017.json'
    return json.loads(path.read_text())


# ----------------------------------------------------------------- layouts


def test_imagenet_layout(demo):
    root = demo / 'imagenet'
    classes = (root / 'meta' / 'classes.txt').read_text().splitlines()
    assert tuple(classes) == CLS_CLASSES
    train = (root / 'meta' / 'train.txt').read_text().splitlines()
    val = (root / 'meta' / 'val.txt').read_text().splitlines()
    assert len(train) == TINY.cls.train * len(CLS_CLASSES)
    assert len(val) == TINY.cls.val * len(CLS_CLASSES)
    folders = sorted(p.name for p in (root / 'train').iterdir())
    assert len(folders) == len(CLS_CLASSES)
    for line in train:
        rel, label = line.rsplit(' ', 1)
        folder = rel.split('/')[0]
        assert folders.index(folder) == int(label)  # folder order = labels
        assert rel.endswith('.JPEG') and (root / 'train' / rel).is_file()
    for line in val:
        rel, _ = line.rsplit(' ', 1)
        assert '/' not in rel and (root / 'val' / rel).is_file()
    assert len(list((root / 'val').iterdir())) == len(val)


def test_coco_layout(demo):
    root = demo / 'coco'
    for split, count in (('train', TINY.det.train), ('val', TINY.det.val)):
        data = read_coco(demo, split)
        assert set(data) >= {'images', 'annotations', 'categories'}
        assert len(data['images']) == count
        names = {p.name for p in (root / f'{split}2017').iterdir()}
        assert names == {img['file_name'] for img in data['images']}
        for img in data['images']:
            decoded = cv2.imread(str(root / f'{split}2017' / img['file_name']))
            assert decoded.shape == (img['height'], img['width'], 3)
        assert [c['name'] for c in data['categories']] == list(DET_CLASSES)
        assert [c['id'] for c in data['categories']
                ] == list(range(1,
                                len(DET_CLASSES) + 1))
    train_ids = {img['id'] for img in read_coco(demo, 'train')['images']}
    val_ids = {img['id'] for img in read_coco(demo, 'val')['images']}
    assert not train_ids & val_ids


def test_ade20k_layout_and_label_range(demo):
    root = demo / 'ADEChallengeData2016'
    seen = Counter()
    for folder, count in (('training', TINY.seg.train), ('validation',
                                                         TINY.seg.val)):
        images = sorted((root / 'images' / folder).glob('*.jpg'))
        labels = sorted((root / 'annotations' / folder).glob('*.png'))
        assert len(images) == len(labels) == count
        assert [p.stem for p in images] == [p.stem for p in labels]
        prefix = 'ADE_train_' if folder == 'training' else 'ADE_val_'
        assert all(p.stem.startswith(prefix) for p in images)
        for image, label in zip(images, labels):
            seg = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
            assert seg.dtype == np.uint8 and seg.ndim == 2
            assert seg.shape == cv2.imread(str(image)).shape[:2]
            assert seg.max() <= len(SEG_CLASSES)
            # dense: only clutter pixels are "other" (0)
            assert (seg == 0).mean() < 0.15
            seen.update(np.unique(seg).tolist())
    assert {1, 2} <= set(seen)  # sky and ground
    assert len(set(seen) - {0, 1, 2}) >= 3  # several shape classes


def test_image_sizes_avoid_multiples_of_32(demo):
    sizes = []
    for pattern in ('imagenet/**/*.JPEG', 'coco/*/*.jpg',
                    'ADEChallengeData2016/images/*/*.jpg'):
        for path in demo.glob(pattern):
            sizes.append(cv2.imread(str(path)).shape[:2])
    assert len(sizes) > 50
    assert all(h % 32 and w % 32 for h, w in sizes)
    aspects = [w / h for h, w in sizes]
    assert min(aspects) < 0.9 and max(aspects) > 1.1


# ------------------------------------------------------------- determinism


def test_same_seed_same_bytes_other_seed_differs(demo, tmp_path):
    again = make_demo_data(tmp_path / 'again', seed=0, spec=TINY)
    other = make_demo_data(tmp_path / 'other', seed=1, spec=TINY)
    for task, root in again.items():
        reference = file_hashes(demo / root.name)
        assert file_hashes(root) == reference
        changed = file_hashes(other[task])
        images = [
            k for k in reference if k.lower().endswith(('.jpg', '.jpeg'))
        ]
        assert all(changed.get(k) != reference[k] for k in images)
    assert read_manifest(again['det'])['sha256'] != read_manifest(
        other['det'])['sha256']


def test_rerun_skips_and_new_params_regenerate(tmp_path):
    spec = DemoDataSpec(cls=SplitSpec(1, 1, 72, 90))
    root = make_demo_data(tmp_path, seed=3, tasks=['cls'], spec=spec)['cls']
    stamp = (root / MANIFEST).stat().st_mtime_ns
    make_demo_data(tmp_path, seed=3, tasks=['cls'], spec=spec)
    assert (root / MANIFEST).stat().st_mtime_ns == stamp
    bigger = DemoDataSpec(cls=SplitSpec(2, 1, 72, 90))
    make_demo_data(tmp_path, seed=3, tasks=['cls'], spec=bigger)
    lines = (root / 'meta' / 'train.txt').read_text().splitlines()
    assert len(lines) == 2 * len(CLS_CLASSES)
    params = read_manifest(root)['params']
    assert params['spec']['train'] == 2 and params['seed'] == 3
    assert params['code'] == generator_digest()  # code edits regenerate
    assert not list(tmp_path.glob('.*partial*'))


def test_refuses_to_overwrite_foreign_directory(tmp_path):
    (tmp_path / 'coco').mkdir()
    (tmp_path / 'coco' / 'mine.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='not made by the demo'):
        make_demo_data(tmp_path, tasks=['det'], spec=TINY)
    assert (tmp_path / 'coco' / 'mine.txt').read_text() == 'keep me'


@pytest.mark.parametrize('kwargs,error', [
    (dict(tasks=['pose']), "allowed tasks are \\['cls', 'det', 'seg'\\]"),
    (dict(seed=-1), 'seed must be an int >= 0'),
])
def test_bad_arguments_say_what_is_allowed(tmp_path, kwargs, error):
    with pytest.raises(ValueError, match=error):
        make_demo_data(tmp_path, **kwargs)


def test_bad_split_spec_is_rejected():
    with pytest.raises(ValueError, match='min_size < max_size'):
        SplitSpec(10, 2, 128, 64)
    with pytest.raises(ValueError, match='counts must be >= 1'):
        SplitSpec(0, 2, 64, 128)


# --------------------------------------------------- labels and annotations


def test_classification_classes_are_balanced(demo):
    for split, per_class in (('train', TINY.cls.train), ('val', TINY.cls.val)):
        lines = (demo / 'imagenet' / 'meta' /
                 f'{split}.txt').read_text().splitlines()
        counts = Counter(int(line.rsplit(' ', 1)[1]) for line in lines)
        assert counts == {i: per_class for i in range(len(CLS_CLASSES))}


def test_detection_classes_are_balanced_ish(tmp_path):
    spec = DemoDataSpec(det=SplitSpec(60, 1, 144, 200))
    root = make_demo_data(tmp_path, tasks=['det'], spec=spec)['det']
    data = json.loads(
        (root / 'annotations' / 'instances_train2017.json').read_text())
    counts = Counter(a['category_id'] for a in data['annotations'])
    assert set(counts) == set(range(1, len(DET_CLASSES) + 1))
    mean = sum(counts.values()) / len(counts)
    assert all(0.6 * mean <= n <= 1.4 * mean for n in counts.values())
    areas = [a['area'] for a in data['annotations']]
    assert max(areas) / min(areas) > 20  # varied scale
    per_image = Counter(a['image_id'] for a in data['annotations'])
    assert max(per_image.values()) >= 5 and min(per_image.values()) >= 1


def test_coco_annotations_agree_with_their_masks(demo):
    from pycocotools.coco import COCO
    path = demo / 'coco' / 'annotations' / 'instances_train2017.json'
    coco = COCO(str(path))
    anns = coco.loadAnns(coco.getAnnIds())
    assert len({a['id'] for a in anns}) == len(anns) > 0
    overlaps = 0
    for ann in anns:
        assert ann['iscrowd'] == 0
        assert all(
            len(p) >= 6 and len(p) % 2 == 0 for p in ann['segmentation'])
        mask = coco.annToMask(ann).astype(bool)
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann['bbox']
        assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() + 1 - xs.min(),
                                ys.max() + 1 - ys.min())
        assert ann['area'] == mask.sum()
        points = np.concatenate(
            [np.reshape(p, (-1, 2)) for p in ann['segmentation']])
        assert points.min(0) == pytest.approx([x + 0.25, y + 0.25], abs=0.26)
        assert points.max(0) == pytest.approx([x + w, y + h], abs=0.26)
    for img_id in coco.getImgIds():
        masks = [
            coco.annToMask(a)
            for a in coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        ]
        # visible masks never overlap (occlusion is resolved) ...
        assert max(np.sum(masks, axis=0).max(), 1) == 1
        boxes = [
            a['bbox'] for a in coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        ]
        for i, (x0, y0, w0, h0) in enumerate(boxes):
            for x1, y1, w1, h1 in boxes[i + 1:]:
                overlaps += (
                    min(x0 + w0, x1 + w1) > max(x0, x1)
                    and min(y0 + h0, y1 + h1) > max(y0, y1))
    assert overlaps > 0  # ... but objects do overlap


def test_polygons_reproduce_the_rendered_masks():
    from pycocotools import mask as mask_utils
    for index in range(6):
        scene = multi_object_scene(
            image_rng(7, 'det', 'train', index), 161, 203, DET_CLASSES)
        assert scene.objects
        for k in range(len(scene.objects)):
            visible = scene.visible_mask(k)
            rle = mask_utils.merge(
                mask_utils.frPyObjects(mask_to_polygons(visible), 161, 203))
            decoded = mask_utils.decode(rle).astype(bool)
            np.testing.assert_array_equal(decoded, visible)


def test_occlusion_keeps_objects_visible_and_hole_free():
    for index in range(10):
        scene = multi_object_scene(
            image_rng(11, 'seg', 'train', index), 177, 211, DET_CLASSES)
        for k, obj in enumerate(scene.objects):
            visible = scene.visible_mask(k).astype(np.uint8)
            assert visible.sum() >= obj.min_visible * obj.full_pixels
            _, hierarchy = cv2.findContours(visible, cv2.RETR_CCOMP,
                                            cv2.CHAIN_APPROX_SIMPLE)
            assert (hierarchy[0, :, 3] < 0).all()


def test_seg_labels_follow_the_documented_convention():
    """PNG value ``v > 0`` means ``SEG_CLASSES[v - 1]``; 0 is clutter."""
    for index in range(6):
        scene = multi_object_scene(
            image_rng(5, 'seg', 'train', index), 150, 190, DET_CLASSES)
        labels = label_map(scene)
        for k, obj in enumerate(scene.objects):
            values = np.unique(labels[scene.visible_mask(k)])
            assert [SEG_CLASSES[v - 1] for v in values] == [obj.kind]
        stuff = scene.instance_map < 0
        assert (labels[stuff & scene.clutter] == 0).all()
        free = stuff & ~scene.clutter
        names = np.array(SEG_CLASSES)[labels[free] - 1]
        np.testing.assert_array_equal(names == 'sky', scene.is_sky[free])
        assert set(names) <= {'sky', 'ground'}


@pytest.mark.parametrize('label', range(len(CLS_CLASSES)))
def test_classification_label_is_the_dominant_shape(label):
    for index in range(3):
        scene = classification_scene(
            image_rng(2, 'cls', 'train', index), 80, 97, CLS_CLASSES, label)
        visible = [
            scene.visible_mask(k).sum() for k in range(len(scene.objects))
        ]
        assert scene.objects[0].kind == CLS_CLASSES[label]
        assert visible[0] == max(visible)
        assert visible[0] >= 0.8 * scene.objects[0].full_pixels
        assert all(obj.kind != CLS_CLASSES[label] for obj in scene.objects[1:])


def test_metainfo_and_palette():
    for task, classes in (('cls', CLS_CLASSES), ('det', DET_CLASSES),
                          ('seg', SEG_CLASSES)):
        meta = metainfo(task)
        assert meta['classes'] == classes
        assert len(meta['palette']) == len(classes)
    with pytest.raises(KeyError, match='allowed tasks'):
        metainfo('pose')


@pytest.mark.parametrize(
    'config,task',
    [(name, 'cls') for name in ('saevit-t_1xb16-5e_demo-in1k-64px.py', )] +
    [(name, 'det')
     for name in ('retinanet_saevit-t_fpn_1xb2-4e_demo-coco.py',
                  'mask-rcnn_saevit-t_fpn_1xb2-4e_demo-coco.py')] +
    [(name, 'seg')
     for name in ('fpn_saevit-t_1xb4-800_demo-ade20k-128x128.py',
                  'upernet_saevit-t_1xb4-400_demo-ade20k-128x128.py')])
def test_demo_configs_name_the_generated_classes(config, task):
    """The demo configs spell the classes out (a config must not import the
    tools); they must be the generator's, in its order and colours."""
    from mmengine.config import Config
    cfg = Config.fromfile(Path(__file__).parents[1] / 'configs' / 'demo' /
                          config)
    meta = metainfo(task)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        written = cfg[loader].dataset.metainfo
        assert tuple(written['classes']) == meta['classes'], loader
        assert [tuple(c) for c in written['palette']] == list(meta['palette'])


def test_cli_generates_then_skips(tmp_path, capsys):
    main = runpy.run_path(str(TOOL), run_name='make_demo_data')['main']
    argv = [
        '--out',
        str(tmp_path), '--tasks', 'seg', '--seg-counts', '2', '1',
        '--seg-size', '100', '140', '--quiet'
    ]
    main(argv)
    main(argv)
    out = capsys.readouterr().out
    assert 'seg: ' in out and '(generated)' in out and '(up to date' in out
    assert len(
        list((tmp_path / 'ADEChallengeData2016' / 'images' /
              'training').iterdir())) == 2
    with pytest.raises(SystemExit):
        main(['--out', str(tmp_path), '--det-size', '300', '100'])


# ------------------------------------------------------------------- hosts


@pytest.mark.cls
def test_mmpretrain_imagenet_loads_demo(demo):
    pytest.importorskip('mmcv.ops')
    datasets = pytest.importorskip('mmpretrain.datasets')
    from mmengine.registry import DefaultScope
    root = demo / 'imagenet'
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=64),
        dict(type='PackInputs'),
    ]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        for split, per_class in (('train', TINY.cls.train), ('val',
                                                             TINY.cls.val)):
            dataset = datasets.ImageNet(
                data_root=str(root),
                split=split,
                classes=str(root / 'meta' / 'classes.txt'),
                pipeline=pipeline)
            assert len(dataset) == per_class * len(CLS_CLASSES)
            assert dataset.CLASSES == CLS_CLASSES
            labels = Counter(
                dataset.get_data_info(i)['gt_label']
                for i in range(len(dataset)))
            assert labels == {c: per_class for c in range(len(CLS_CLASSES))}
            sample = dataset[0]
            assert tuple(sample['inputs'].shape) == (3, 64, 64)
        folders = datasets.CustomDataset(
            data_root=str(root), data_prefix='train', with_label=True)
        by_folder = sorted(
            (d['img_path'], d['gt_label']) for d in folders.load_data_list())
        by_list = sorted(
            (d['img_path'], d['gt_label']) for d in datasets.ImageNet(
                data_root=str(root), split='train', classes=list(
                    CLS_CLASSES)).load_data_list())
        assert by_folder == by_list


@pytest.mark.det
def test_mmdet_coco_loads_demo_and_gt_scores_full_map(demo):
    pytest.importorskip('mmcv.ops')
    pytest.importorskip('mmdet.datasets')
    import torch
    from mmdet.datasets import CocoDataset
    from mmdet.evaluation import CocoMetric
    from mmengine.registry import DefaultScope
    root = demo / 'coco'
    ann_file = root / 'annotations' / 'instances_val2017.json'
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(
            type='PackDetInputs',
            meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape')),
    ]
    raw = json.loads(ann_file.read_text())
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = CocoDataset(
            data_root=str(root),
            ann_file='annotations/instances_val2017.json',
            data_prefix=dict(img='val2017/'),
            metainfo=dict(classes=DET_CLASSES),
            test_mode=True,
            pipeline=pipeline)
        assert len(dataset) == TINY.det.val
        assert dataset.metainfo['classes'] == DET_CLASSES
        metric = CocoMetric(ann_file=str(ann_file), metric=['bbox', 'segm'])
        metric.dataset_meta = dataset.metainfo
        num_instances = 0
        for index in range(len(dataset)):
            sample = dataset[index]['data_samples']
            gt = sample.gt_instances
            num_instances += len(gt)
            masks = torch.from_numpy(gt.masks.to_ndarray().astype(bool))
            assert masks.shape[1:] == sample.ori_shape
            metric.process({}, [
                dict(
                    img_id=sample.img_id,
                    ori_shape=sample.ori_shape,
                    pred_instances=dict(
                        bboxes=gt.bboxes.tensor,
                        scores=torch.ones(len(gt)),
                        labels=gt.labels,
                        masks=masks))
            ])
        assert num_instances == len(raw['annotations'])
        results = metric.evaluate(len(dataset))
    # the ground truth, fed back as predictions, must be a perfect score
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/segm_mAP'] == pytest.approx(1.0)


@pytest.mark.seg
def test_mmseg_loads_demo_with_ade_settings(demo):
    pytest.importorskip('mmcv.ops')
    pytest.importorskip('mmseg.datasets')
    from mmengine.registry import DefaultScope
    from mmseg.datasets import ADE20KDataset, BaseSegDataset
    from mmseg.evaluation import IoUMetric
    root = demo / 'ADEChallengeData2016'
    prefix = dict(
        img_path='images/validation', seg_map_path='annotations/validation')
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='PackSegInputs'),
    ]
    with DefaultScope.overwrite_default_scope('mmseg'):
        # The layout is ADE20K's own ...
        ade = ADE20KDataset(data_root=str(root), data_prefix=prefix)
        assert len(ade) == TINY.seg.val
        # ... but ADE20KDataset only takes subsets of its 150 names.
        with pytest.raises(ValueError, match='not a subset'):
            ADE20KDataset(
                data_root=str(root),
                data_prefix=prefix,
                metainfo=metainfo('seg'))
        dataset = BaseSegDataset(
            data_root=str(root),
            data_prefix=prefix,
            img_suffix='.jpg',
            seg_map_suffix='.png',
            reduce_zero_label=True,
            metainfo=metainfo('seg'),
            pipeline=pipeline)
        assert len(dataset) == TINY.seg.val
        assert dataset.metainfo['classes'] == SEG_CLASSES
        metric = IoUMetric(iou_metrics=['mIoU'])
        metric.dataset_meta = dataset.metainfo
        for index in range(len(dataset)):
            item = dataset[index]
            sample = item['data_samples']
            gt = sample.gt_sem_seg.data.squeeze(0).numpy()
            png = cv2.imread(sample.seg_map_path, cv2.IMREAD_UNCHANGED)
            expected = np.where(png == 0, 255, png.astype(np.int64) - 1)
            np.testing.assert_array_equal(gt, expected)
            assert tuple(item['inputs'].shape[1:]) == png.shape
            metric.process({}, [
                dict(
                    pred_sem_seg=dict(data=sample.gt_sem_seg.data),
                    gt_sem_seg=dict(data=sample.gt_sem_seg.data))
            ])
        results = metric.evaluate(len(dataset))
    assert results['mIoU'] == pytest.approx(100.0)
