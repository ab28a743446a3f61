"""``python -m vigie``: the `vigie` command line."""

from pipelines.cli import run

run()
