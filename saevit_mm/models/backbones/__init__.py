"""Backbones of saevit_mm."""
from .saevit import SAEViT

__all__ = ['SAEViT']
