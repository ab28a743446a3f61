"""`vigie live`: presence against its reference as the slots arrive (issue 17).

New presence files land in an inbox; each is appended to the store once
(:mod:`features.ingest.append`, recorded in a ledger), its slots are compared with their
reference (:mod:`pipelines.live.detect`), persistent gaps become alerts written to
``store/live/alerts.jsonl`` and posted to a webhook (:mod:`pipelines.live.alerts`), and
``reports/live/index.html`` is rewritten (:mod:`pipelines.live.page`). The history a file is
tested against is read once, when the runner starts, and kept up to date in memory, with the
newest hours' cube rows (:mod:`pipelines.live.cube_update`). :mod:`pipelines.live.run`
orchestrates; :mod:`pipelines.live.replay` feeds a stored period through the same path.
"""

from pipelines.live.settings import LiveSettings

__all__ = ["LiveSettings"]
