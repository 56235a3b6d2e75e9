"""The one place the saevit_mm version is written."""

__version__ = '0.1.0'
