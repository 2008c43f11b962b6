"""ltr-pipeline: a self-feeding Learning-to-Rank pipeline."""

__version__ = "0.1.0"
