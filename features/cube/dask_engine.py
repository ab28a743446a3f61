"""The Dask engine: the pandas month builder as one ``dask.delayed`` task per month.

Tasks run on the local threaded scheduler, or on a ``distributed`` cluster whose workers see the
store's folder at the same path: an existing one (``tcp://host:8786``) or a ``LocalCluster``
started for the command (``local``, :func:`scheduler`). :func:`run_tasks` is the one way every
heavy step (the cube, the GLM's sufficient statistics) sends its tasks.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def scheduler(value: str | None, *, workers: int | None = None) -> Iterator[str | None]:
    """The scheduler address a command runs its Dask tasks on, for its duration.

    Parameters
    ----------
    value
        None (local threads: yields None), ``local`` (starts a ``distributed.LocalCluster`` of
        ``workers`` single-threaded worker processes, default the CPU count, and closes it
        afterwards), or the address of a running scheduler (``tcp://host:8786``, checked).
    workers
        Workers of a ``local`` cluster.

    Raises
    ------
    ConfigError
        An unreachable or malformed address.
    """
    if value is None or value == "":
        yield None
        return
    if value != "local":
        check_reachable(value)
        yield value
        return
    from distributed import LocalCluster  # heavy: loaded only for a cluster

    n = workers or max(1, os.cpu_count() or 1)
    with LocalCluster(
        n_workers=n, threads_per_worker=1, dashboard_address=None, silence_logs=40
    ) as cluster:
        yield str(cluster.scheduler_address)


def run_tasks(tasks: list[Any], address: str | None) -> list[Any]:
    """Compute ``dask.delayed`` tasks: local threads (``address`` None) or the cluster there."""
    import dask  # heavy: loaded only when a Dask path runs

    if address is None:
        return list(dask.compute(*tasks, scheduler="threads"))
    return _on_cluster(tasks, address)


def _on_cluster(tasks: list[Any], address: str) -> list[Any]:
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
    return run_tasks(tasks, address)
