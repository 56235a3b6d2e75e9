"""SAEViT models: backbone, layers and utilities."""
