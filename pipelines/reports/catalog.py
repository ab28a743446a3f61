"""The project's reports: which notebook, which parameters, which store files each one reads.

=============  ==========================  =============================================
kind           notebook                    reads (hashed into the provenance)
=============  ==========================  =============================================
weekly         ``weekly_report.ipynb``     the cube, evaluation, effects, the week's signals
event-brief    ``event_brief.ipynb``       the cube, the events, the event's brief
evaluation     ``model_evaluation.ipynb``  the cube, evaluation, effects
explore        ``explore.ipynb``           the cube
=============  ==========================  =============================================

The store files are named through :class:`features.store.Store`'s places.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from features.store import Store
from features.timeutil import as_utc, iso_week, last_full_week, parse_iso_week
from pipelines.events.spec import brief_key
from pipelines.reports.basemap import VECTOR_SUFFIXES
from pipelines.reports.errors import ReportError, check_id
from pipelines.reports.runner import NOTEBOOK_DIR, ReportResult, run_notebook

#: report kind -> notebook file in :data:`~pipelines.reports.runner.NOTEBOOK_DIR`
KINDS: dict[str, str] = {
    "weekly": "weekly_report.ipynb",
    "event-brief": "event_brief.ipynb",
    "evaluation": "model_evaluation.ipynb",
    "explore": "explore.ipynb",
}

#: the cube's description, read by every report
CUBE_META = "cube_meta.json"


def notebook_path(kind: str, notebook_dir: str | Path | None = None) -> Path:
    """The notebook of a report kind (in ``notebook_dir``, default the project's notebooks)."""
    return Path(notebook_dir or NOTEBOOK_DIR) / KINDS[kind]


def _require_store(store: str | Path) -> Store:
    root = Path(store)
    if not (root / "study.json").exists():
        raise ReportError(
            f"{root}: not a vigie store (no study.json); run `vigie ingest SOURCES.yaml "
            f"--store {root}` first."
        )
    return Store(root.resolve())


def _tiles(st: Store, tiles: str | None) -> str | None:
    """The base of a report's maps: ``tiles`` (``--tiles``), else the study's ``area.tiles``,
    else None (the offline base: the zones' outline and names, :mod:`~pipelines.reports.basemap`).

    A local vector file (the study's streets or districts) is made absolute: a relative path is
    read from the current folder, else from the store's folder.

    Raises
    ------
    ReportError
        The local file named is in neither place.
    """
    value = tiles or (st.study().get("area") or {}).get("tiles") or None
    if not value or "://" in value or not value.lower().endswith(VECTOR_SUFFIXES):
        return value
    for base in (Path.cwd(), st.root):
        path = (base / Path(value).expanduser()).resolve()
        if path.is_file():
            return str(path)
    raise ReportError(
        f"base layer {value!r}: no such file in {Path.cwd()} or in the store {st.root} (a "
        "local GeoJSON, GeoPackage, Shapefile or GeoParquet of streets or districts)."
    )


def _relpath(path: Path, st: Store) -> str:
    return path.relative_to(st.root).as_posix()


def cube_weeks(st: Store) -> tuple[str, str, str]:
    """The ISO weeks (local time) of the cube's first and last hours, and its last whole week."""
    meta = st.cube_meta()
    tz = meta.get("timezone") or st.timezone
    first = as_utc(meta["start"]).tz_convert(tz)
    last = (as_utc(meta["end"]) - pd.Timedelta(seconds=1)).tz_convert(tz)
    return iso_week(first), iso_week(last), last_full_week(meta["end"], tz)


def check_week(st: Store, week: str) -> None:
    """Refuse, before any notebook runs, an ISO week the cube holds no hour of.

    Raises
    ------
    ReportError
        The week lies before or after the data; the message names the weeks the cube holds
        (an InputError for a week that is not ISO, a StoreError without a cube).
    """
    monday, next_monday = parse_iso_week(week)
    meta = st.cube_meta()  # a StoreError (exit 2) when there is no cube
    tz = meta.get("timezone") or st.timezone
    start = pd.Timestamp(monday).tz_localize(tz)
    end = pd.Timestamp(next_monday).tz_localize(tz)
    cube_start, cube_end = as_utc(meta["start"]), as_utc(meta["end"])
    if end <= cube_start or start >= cube_end:
        first, last, whole = cube_weeks(st)
        side = "before" if end <= cube_start else "after"
        raise ReportError(
            f"week {week} is {side} the data: the cube of {st.root} holds the weeks {first} to "
            f"{last} ({cube_start.tz_convert(tz):%Y-%m-%d} to "
            f"{(cube_end - pd.Timedelta(seconds=1)).tz_convert(tz):%Y-%m-%d}, local time); the "
            f"last whole week is {whole}. Choose a week among them, e.g. --week {whole}."
        )


def report_weekly(
    store: str | Path,
    *,
    week: str,
    reports_dir: str | Path = "reports",
    notebook_dir: str | Path | None = None,
    kernel_name: str | None = None,
    tiles: str | None = None,
    pdf: bool = False,
) -> ReportResult:
    """The weekly report of ISO week ``week`` (``reports/weekly/<week>/``); ``tiles``: a base
    map for its maps (default the study's ``area.tiles``, else none); ``pdf``: also
    ``report.pdf`` (headless Chromium)."""
    st = _require_store(store)
    check_week(st, week)
    return run_notebook(
        notebook_path("weekly", notebook_dir),
        kind="weekly",
        report_id=week,
        parameters={"store": str(st.root), "week": week, "tiles": _tiles(st, tiles)},
        reports_dir=reports_dir,
        store=st.root,
        inputs=[CUBE_META, Store.EVALUATION_JSON, Store.EFFECTS_JSON, st.signals_relpath(week)],
        title=f"Weekly report {week}",
        kernel_name=kernel_name,
        pdf=pdf,
    )


def report_brief(
    store: str | Path,
    event_id: str,
    *,
    reports_dir: str | Path = "reports",
    notebook_dir: str | Path | None = None,
    kernel_name: str | None = None,
    tiles: str | None = None,
    pdf: bool = False,
) -> ReportResult:
    """The planning brief of an event of the store (``reports/event-brief/<key>/``); ``tiles``
    and ``pdf`` as for :func:`report_weekly`.

    ``event_id`` is the event's id as the store holds it; the brief's file and the report's
    folder are named by :func:`pipelines.events.spec.brief_key` (unsafe characters replaced), as
    :func:`pipelines.events.brief.make_brief` names them.
    """
    st = _require_store(store)
    key = check_id(brief_key(event_id), "event id")
    return run_notebook(
        notebook_path("event-brief", notebook_dir),
        kind="event-brief",
        report_id=key,
        parameters={"store": str(st.root), "event_id": key, "tiles": _tiles(st, tiles)},
        reports_dir=reports_dir,
        store=st.root,
        inputs=[CUBE_META, _relpath(st.validated_path("events"), st), st.brief_relpath(key)],
        title=f"Event brief {key}",
        kernel_name=kernel_name,
        pdf=pdf,
    )


def report_evaluation(
    store: str | Path,
    *,
    reports_dir: str | Path = "reports",
    report_id: str | None = None,
    notebook_dir: str | Path | None = None,
    kernel_name: str | None = None,
    pdf: bool = False,
) -> ReportResult:
    """The model evaluation (``reports/evaluation/<date>/`` by default); ``pdf`` as for
    :func:`report_weekly`."""
    st = _require_store(store)
    rid = report_id or dt.date.today().isoformat()
    return run_notebook(
        notebook_path("evaluation", notebook_dir),
        kind="evaluation",
        report_id=rid,
        parameters={"store": str(st.root)},
        reports_dir=reports_dir,
        store=st.root,
        inputs=[CUBE_META, Store.EVALUATION_JSON, Store.EFFECTS_JSON],
        title=f"Model evaluation {rid}",
        kernel_name=kernel_name,
        pdf=pdf,
    )


def report_explore(
    store: str | Path,
    *,
    reports_dir: str | Path = "reports",
    report_id: str | None = None,
    notebook_dir: str | Path | None = None,
    kernel_name: str | None = None,
    pdf: bool = False,
) -> ReportResult:
    """The exploration notebook, run on a store (``reports/explore/<date>/``); ``pdf`` as for
    :func:`report_weekly`."""
    st = _require_store(store)
    rid = report_id or dt.date.today().isoformat()
    return run_notebook(
        notebook_path("explore", notebook_dir),
        kind="explore",
        report_id=rid,
        parameters={"store": str(st.root)},
        reports_dir=reports_dir,
        store=st.root,
        inputs=[CUBE_META],
        title=f"Exploration {rid}",
        kernel_name=kernel_name,
        pdf=pdf,
    )
