"""SAEViT builds by plain and scoped name under every host's default scope."""
import importlib

import pytest
from mmengine.registry import DefaultScope

import saevit_mm
from saevit_mm.models import SAEViT

HOSTS = ['mmpretrain', 'mmdet', 'mmseg']


def host_models(scope):
    pytest.importorskip(f'{scope}.models')
    return importlib.import_module(f'{scope}.registry').MODELS


@pytest.mark.parametrize('scope', HOSTS)
@pytest.mark.parametrize('type_name', ['SAEViT', 'saevit_mm.SAEViT'])
def test_builds_under_host_scope(scope, type_name):
    models = host_models(scope)
    with DefaultScope.overwrite_default_scope(scope):
        backbone = models.build(
            dict(type=type_name, arch='t', out_indices=(0, 3)))
    assert type(backbone) is SAEViT
    assert backbone.out_channels == (40, 384)


@pytest.mark.parametrize('scope', HOSTS)
def test_custom_imports_in_a_host_config(scope, tmp_path):
    """The config route: custom_imports, then the host's own builder."""
    from mmengine.config import Config
    models = host_models(scope)
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text(
        "custom_imports = dict(imports=['saevit_mm'], "
        'allow_failed_imports=False)\n'
        f"default_scope = '{scope}'\n"
        "model = dict(type='SAEViT', arch='s')\n")
    cfg = Config.fromfile(str(cfg_file))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        assert type(models.build(cfg.model)) is SAEViT


def test_import_and_reload_twice_do_not_fail():
    import saevit_mm.models.backbones.saevit as module
    from mmengine.registry import MODELS as ROOT
    original = module.SAEViT
    importlib.import_module('saevit_mm')
    try:
        importlib.reload(module)
        importlib.reload(module)
        assert ROOT.get('SAEViT') is module.SAEViT is not original
        assert saevit_mm.registry.MODELS.get('SAEViT') is module.SAEViT
    finally:  # later tests compare against the class they imported
        for registry in (ROOT, saevit_mm.registry.MODELS):
            registry.register_module(module=original, force=True)
        module.SAEViT = original


def test_other_class_with_the_same_name_is_refused():
    """A clash with a foreign class stays loud (mmengine's KeyError)."""
    from saevit_mm.registry import register_model

    foreign = type('SAEViT', (), {'__module__': 'somewhere_else'})
    with pytest.raises(KeyError, match='already registered'):
        register_model(foreign)
