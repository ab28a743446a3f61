"""Zone names beside zone codes in what the commands print (``In zone 750560148`` ->
``In zone 750560148 (Les Tanneurs 2)``), as the reports show them."""

from __future__ import annotations

import logging

from features.errors import VigieError
from features.store import Store

log = logging.getLogger(__name__)


def zone_names(store: Store) -> dict[str, str]:
    """Zone names by code from the store's zones; empty when the store has no named zones."""
    try:
        z = store.zones()
    except (VigieError, OSError, ValueError) as exc:  # no zones file: codes stay alone
        log.info("zone names not available: %s", exc)
        return {}
    if "name" not in z.columns:
        return {}
    return {
        str(c): str(n).strip()
        for c, n in zip(z["zone_id"], z["name"], strict=True)
        if isinstance(n, str) and n.strip()
    }


def with_zone_names(text: str, store: Store) -> str:
    """``text`` with every zone code of the store followed by the zone's name."""
    from pipelines.reports.labels import name_zones_in_text

    return str(name_zones_in_text(text, zone_names(store)))
