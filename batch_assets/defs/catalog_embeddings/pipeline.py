"""Embed the product catalogue from a generator of requests: the iterator way in."""

from collections.abc import Iterator
from typing import Any

from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.sources import IteratorSource

CATALOG = {
    "P-100": "Aurora trail running shoes: grippy, light, for rocky trails.",
    "P-101": "Kestrel 2-person tent: three-season, 2.1 kg, two doors.",
    "P-102": "Nimbus down sleeping bag: comfort rating -5 C, packs to 4 litres.",
    "P-103": "Basalt insulated water bottle: keeps drinks cold for 24 hours.",
    "P-104": "Ridge 35L daypack: ventilated back panel, rain cover included.",
    "P-105": "Lumen rechargeable headlamp: 400 lumens, USB-C.",
    "P-106": "Cinder camping stove: boils a litre in three minutes.",
    "P-107": "Drift merino base layer: soft, odour resistant.",
    "P-108": "Talus trekking poles: carbon, collapsible, cork grips.",
    "P-109": "Harbor rain shell jacket: waterproof, breathable, packable.",
}


def catalog_requests() -> Iterator[dict[str, Any]]:
    """One embeddings request per catalogue entry, yielded one at a time."""
    for product_id, text in CATALOG.items():
        yield {
            "custom_id": product_id,
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": text, "dimensions": 256},
        }


defs = build_batch_pipeline(
    "catalog_embeddings",
    IteratorSource(catalog_requests),
    endpoint="/v1/embeddings",
    metadata={"example": "catalog_embeddings"},
    description="A 256-dimension embedding for every product in the catalogue.",
)
