"""The catalog service: products, prices, search, rating summaries and moderation flags."""

from streamcart.workers.catalog.service import CatalogSettings, build

__all__ = ["CatalogSettings", "build"]
