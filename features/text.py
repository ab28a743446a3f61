"""Text rules shared by every stage: the slug of a category."""

from __future__ import annotations

import re
import unicodedata


def slug(category: str) -> str:
    """Column-safe slug of an incident category: ASCII, lower case, non-alphanumerics to ``_``.

    The cube's ``inc_<slug>`` columns, the model groups and the effect names all use it, so
    "Dégradation" is ``degradation`` everywhere.

    Examples
    --------
    >>> slug("Vol à l'étalage")
    'vol_a_l_etalage'
    >>> slug("ROAD ACCIDENT")
    'road_accident'
    >>> slug("Dégradation")
    'degradation'
    """
    text = unicodedata.normalize("NFKD", str(category)).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return text or "other"
