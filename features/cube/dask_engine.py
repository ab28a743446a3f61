"""The Dask engine: the pandas month builder as one ``dask.delayed`` task per month.

Tasks run on the local threaded scheduler, or on a ``distributed`` cluster whose workers see the
store's folder at the same path.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from features.cube.month import build_month
from features.cube.period import MonthSpec
from features.cube.plan import Plan
from features.errors import ConfigError


def check_reachable(address: str) -> None:
    """Fail fast (2 s) when nothing listens at a tcp://host:port scheduler address.

    Raises
    ------
    ConfigError
        A malformed address, or nothing listening there.
    """
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.scheme in ("inproc", "ucx", "ws", "wss"):
        return  # not a plain socket: let distributed connect
    if parsed.scheme not in ("tcp", "tls") or not parsed.hostname or not parsed.port:
        raise ConfigError(
            f"bad Dask scheduler address {address!r}: expected tcp://host:port, "
            "e.g. tcp://127.0.0.1:8786."
        )
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=2).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Dask scheduler at {address!r} ({exc.strerror or exc}); expected the "
            "address of a running distributed scheduler, e.g. tcp://127.0.0.1:8786."
        ) from None


def _on_cluster(tasks: list[Any], address: str) -> list[dict[str, Any]]:
    try:
        from distributed import Client  # heavy: loaded only for a cluster
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise ConfigError(
            "engine 'dask' with a scheduler address needs the distributed package."
        ) from exc
    check_reachable(address)
    try:
        client = Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"cannot reach the Dask scheduler at {address!r} ({exc}); expected the address of a "
            "running distributed scheduler, e.g. tcp://127.0.0.1:8786."
        ) from None
    try:
        return list(client.gather(client.compute(tasks)))
    finally:
        client.close()


def run_dask(
    plan: Plan, specs: list[MonthSpec], *, build_dir: Path, address: str | None = None
) -> list[dict[str, Any]]:
    """Build every month as a Dask task; returns the months' summaries in order.

    Parameters
    ----------
    plan
        The cube's plan (pickled to the workers).
    specs
        The months.
    build_dir
        The folder the partitions go in.
    address
        A ``distributed`` scheduler address, or None for the local threaded scheduler.
    """
    import dask  # heavy: loaded only when this engine runs

    tasks = [dask.delayed(build_month)(plan, spec, out_dir=str(build_dir)) for spec in specs]
    if address is None:
        return list(dask.compute(*tasks, scheduler="threads"))
    return _on_cluster(tasks, address)
