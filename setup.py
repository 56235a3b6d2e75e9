"""Packaging for saevit_mm: version from version.py, version ranges from
requirements/*.txt (the exact stacks CI tests are in requirements/constraints/).
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements(name: str) -> list:
    """Requirement lines of ``requirements/<name>.txt``, comments dropped."""
    lines = (HERE / 'requirements' / f'{name}.txt').read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines
            if ln.split('#')[0].strip()]


def read_version() -> str:
    namespace: dict = {}
    exec((HERE / 'saevit_mm' / 'version.py').read_text(), namespace)
    return namespace['__version__']


hosts = {name: read_requirements(name) for name in ('cls', 'det', 'seg')}
setup(
    name='saevit_mm',
    version=read_version(),
    description='SAEViT, a lightweight conv + ViT backbone, for mmpretrain, '
    'mmdet and mmsegmentation',
    long_description=(HERE / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['saevit_mm', 'saevit_mm.*']),
    # 3.12 is excluded: torch 2.1 (our lowest supported torch) has no 3.12
    # wheels, and mmengine 0.10.7 imports distutils (removed in 3.12) in the
    # environment report every Runner writes
    python_requires='>=3.10,<3.12',
    classifiers=[
        'Programming Language :: Python :: 3.10',
        'Programming Language :: Python :: 3.11',
        'License :: OSI Approved :: Apache Software License',
    ],
    install_requires=read_requirements('runtime'),
    extras_require={
        **hosts,
        'mmcv': read_requirements('mminstall'),
        'all': read_requirements('mminstall') +
        [req for reqs in hosts.values() for req in reqs],
        'tests': read_requirements('tests'),
    },
    license='Apache-2.0',
    zip_safe=False,
)
