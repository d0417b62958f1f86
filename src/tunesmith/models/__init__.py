"""Locate and load packaged, local or hub models."""

from tunesmith.models.catalog import CATALOG, CatalogEntry, resolve_model
from tunesmith.models.loader import load_pretrained, load_tokenizer

__all__ = ["CATALOG", "CatalogEntry", "resolve_model", "load_pretrained", "load_tokenizer"]
