"""The host a config belongs to, by its ``default_scope``."""
from mmengine.config import Config

__all__ = ['HOST_SCOPES', 'host_scope']

#: The scopes of the hosts: mmpretrain, mmdet and mmseg.
HOST_SCOPES = ('mmpretrain', 'mmdet', 'mmseg')


def host_scope(cfg: Config, flag: str) -> str:
    """The config's ``default_scope``, which must be one of the hosts."""
    scope = cfg.get('default_scope')
    if scope not in HOST_SCOPES:
        raise ValueError(
            f'{flag}: the config has default_scope={scope!r}; supported '
            f'scopes are {sorted(HOST_SCOPES)}.')
    return scope
