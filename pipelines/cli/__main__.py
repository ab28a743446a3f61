"""``python -m pipelines.cli``: the `vigie` command."""

from pipelines.cli import run

run()
