"""`vigie serve`: a read-only HTTP API over a store, for services and dashboards.

Modules
-------
data
    :class:`StoreView`: what the API reads, checked, cached and published (suppressed).
streaming
    Long answers written record by record (JSON with a streamed list, NDJSON).
app
    The FastAPI application (:func:`create_app`), its errors and token, and :func:`serve`.
"""

from __future__ import annotations

from pipelines.api.app import TOKEN_ENV, create_app, serve
from pipelines.api.data import StoreView

__all__ = ["TOKEN_ENV", "StoreView", "create_app", "serve"]
