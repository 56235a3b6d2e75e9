"""SAEViT models: backbone, layers and utilities."""
from .backbones import SAEViT

__all__ = ['SAEViT']
