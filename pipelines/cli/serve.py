"""`vigie serve`: a read-only HTTP API over a store (FastAPI + uvicorn)."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import user_errors
from pipelines.cli.lazy import lazy

# FastAPI, uvicorn and the store's readers load only when the command runs
serve = lazy("pipelines.api.app", "serve")


@user_errors
def serve_cmd(
    store: Path = typer.Option(..., "--store", help="Store folder with zones and a cube."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind (default: this machine only)."
    ),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="Port to listen on."),
    token_env: str = typer.Option(
        "VIGIE_API_TOKEN",
        "--token-env",
        help="Environment variable holding the bearer token; when it is set, every data "
        "endpoint requires `Authorization: Bearer <token>`.",
    ),
) -> None:
    """Serve a store read-only over HTTP: /zones, /presence, /signals, /briefs, /indicators."""
    serve(store, host=host, port=port, token_env=token_env)
