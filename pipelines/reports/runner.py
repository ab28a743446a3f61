"""Run one parameterised notebook with papermill and write its report atomically.

A report is a notebook of ``notebooks/`` run like a function (Ploomber's view of a parameterised
notebook): the parameters are checked first (:mod:`pipelines.reports.kernel`), the notebook runs
on a kernel named explicitly, and the executed notebook is exported to one HTML page with the
code hidden (:mod:`pipelines.reports.export`).

Layout written::

    reports/
      index.html                     every report, newest first
      <kind>/<id>/report.html        code hidden, maps inline (opens with no network)
      <kind>/<id>/report.ipynb       the executed notebook
      <kind>/<id>/summary.json       the figures shown (small counts suppressed) + provenance
      <kind>/<id>/report.pdf         with ``pdf=True`` (``--pdf``): the page printed by headless
                                     Chromium on A4 landscape
      _failed/<kind>-<id>-<UTC stamp>.ipynb and .error.txt   failed runs, kept for diagnosis

Atomicity: a run builds its report in a temporary folder beside the target and renames it into
place only when the notebook ran and exported; a failed run leaves the previous report intact,
copies the failed notebook and its traceback under ``reports/_failed/`` and raises
:class:`~pipelines.reports.errors.ReportError` naming the failing cell. The swap of an existing
report is two renames (old aside, new in place) on the same file system, so a reader sees either
report whole; a swap cut by a kill between the two is finished by the next run, which also
removes the temporary folders of killed runs (never those of a live one: their names carry their
process id and host, :func:`features.store.clean_stale`).

The figures of ``summary.json`` come from the notebook itself: cells call
:func:`pipelines.reports.publish.emit_summary`; the runner merges these payloads in order,
strips them from the HTML, applies small-count suppression once more and adds provenance
(:mod:`pipelines.reports.provenance`).

References
----------
papermill: https://papermill.readthedocs.io (parameters, ``inspect_notebook``, kernels).
Ploomber, "notebooks as functions": https://docs.ploomber.io.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm

from features.store import clean_stale, swap_in, temp_sibling
from pipelines.reports.errors import ReportError, check_id
from pipelines.reports.export import (
    CHROMIUM_HINT,
    collect_summaries,
    export_html,
    find_chromium,
    print_pdf,
)
from pipelines.reports.index import write_index
from pipelines.reports.kernel import check_parameters, ensure_kernel
from pipelines.reports.provenance import PROJECT_ROOT, provenance, suppression_threshold
from pipelines.reports.publish import find_derivable, find_unsuppressed, suppress_json

log = logging.getLogger(__name__)

#: the project's notebooks folder (beside the ``pipelines`` package)
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"


@dataclass(frozen=True)
class ReportResult:
    """What a successful run wrote.

    Attributes
    ----------
    kind, report_id
        ``reports/<kind>/<report_id>/``.
    directory, html, notebook, summary_path
        The report's folder and its three files.
    summary
        The content of ``summary.json``.
    seconds
        Wall time of the run (execution + export).
    pdf
        ``report.pdf`` when it was asked for, else None.
    """

    kind: str
    report_id: str
    directory: Path
    html: Path
    notebook: Path
    summary_path: Path
    summary: dict[str, Any] = field(repr=False)
    seconds: float
    pdf: Path | None = None


@dataclass(frozen=True)
class _Run:
    """One run, as worked out before the kernel starts."""

    notebook: Path
    kind: str
    report_id: str
    params: dict[str, Any]
    kernel: str
    root: Path
    tmp: Path
    k: int
    t0: float

    @property
    def out_nb(self) -> Path:
        return self.tmp / "report.ipynb"


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _working_dir(notebook: Path) -> Path:
    """The project's root for the project's notebooks (they import ``pipelines``), else the
    notebook's own folder."""
    folder = notebook.resolve().parent
    return PROJECT_ROOT if folder == NOTEBOOK_DIR else folder


def _kernel_log_level() -> str:
    """The kernel's log level: its warnings only when vigie runs with -v (DEBUG or INFO)."""
    return "WARN" if logging.getLogger().isEnabledFor(logging.INFO) else "ERROR"


def _cell_counter(notebook: Path) -> Any:
    """A hook for nbclient's ``on_cell_executed``: logs ``report cell i of n`` (DEBUG), what
    the command line's progress bar counts (n: the code cells, plus papermill's parameters)."""
    nb = nbformat.read(str(notebook), as_version=4)
    total = 1 + sum(1 for c in nb.cells if c.get("cell_type") == "code" and c.source.strip())
    done = [0]

    def hook(**_: Any) -> None:
        done[0] += 1
        log.debug("report cell %d of %d", min(done[0], total), total)

    return hook


def _execute(run: _Run, *, timeout: int) -> None:
    """Run the notebook into ``run.out_nb``; on failure keep it under ``_failed/`` and raise."""
    try:
        pm.execute_notebook(
            str(run.notebook),
            str(run.out_nb),
            parameters=run.params,
            kernel_name=run.kernel,
            language="python",
            progress_bar=False,
            log_output=False,
            cwd=str(_working_dir(run.notebook)),
            execution_timeout=timeout,
            # the kernel's own start-up notes ("running over TCP without encryption": it listens
            # on 127.0.0.1 only) are library noise: shown with -v only
            extra_arguments=[f"--IPKernelApp.log_level={_kernel_log_level()}"],
            on_cell_executed=_cell_counter(run.notebook),
        )
    except Exception as exc:  # a failing cell, a dead kernel, a timeout...
        err = _failure(exc, run.kind, run.report_id, run.out_nb, run.root)
        write_index(run.root)
        raise err from None


def _summary(
    run: _Run, figures: dict[str, Any], n_payloads: int, *, title: str, prov: dict[str, Any]
) -> dict[str, Any]:
    """The content of ``summary.json``."""
    return {
        "kind": run.kind,
        "id": run.report_id,
        "title": title,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "suppression_k": run.k,
        "figures": figures,
        "figures_emitted": n_payloads,
        "provenance": prov,
        "duration_s": round(time.perf_counter() - run.t0, 2),
    }


def _write_report(
    run: _Run,
    *,
    title: str | None,
    store: str | Path | None,
    inputs: list[str] | None,
) -> dict[str, Any]:
    """Export the executed notebook: report.html, summary.json, and the notebook without the
    summary outputs, all in ``run.tmp``. Returns the summary."""
    nb = nbformat.read(str(run.out_nb), as_version=4)
    figures, n_payloads = collect_summaries(nb)
    figures = suppress_json(figures, run.k)
    page_title = str(figures.get("title") or title or f"{run.kind} {run.report_id}")
    (run.tmp / "report.html").write_text(export_html(nb, title=page_title), encoding="utf-8")
    prov = provenance(
        run.notebook, parameters=run.params, kernel=run.kernel, store=store, inputs=inputs
    )
    summary = _summary(run, figures, n_payloads, title=page_title, prov=prov)
    bad = find_unsuppressed(summary["figures"], run.k)
    bad += find_derivable(summary["figures"], run.k)
    if bad:  # pragma: no cover - suppress_json makes this impossible
        raise ReportError(f"summary has unsuppressed small counts at {bad[:5]}")
    (run.tmp / "summary.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
    )
    # the executed notebook keeps the summary outputs stripped too (they are in summary.json)
    nbformat.write(nb, str(run.out_nb))
    return summary


def run_notebook(
    notebook: str | Path,
    *,
    kind: str,
    report_id: str,
    parameters: dict[str, Any] | None = None,
    reports_dir: str | Path = "reports",
    store: str | Path | None = None,
    inputs: list[str] | None = None,
    title: str | None = None,
    kernel_name: str | None = None,
    timeout: int = 1800,
    suppression_k: int | None = None,
    pdf: bool = False,
) -> ReportResult:
    """Run one parameterised notebook with papermill and write its report atomically.

    Parameters
    ----------
    notebook
        The notebook to run (a cell tagged ``parameters`` is required).
    kind, report_id
        The report lands in ``reports_dir/<kind>/<report_id>/``.
    parameters
        Values for the notebook's parameters; checked with
        :func:`~pipelines.reports.kernel.check_parameters` first.
    reports_dir
        Root of the reports tree; ``index.html`` there is regenerated.
    store, inputs
        The store and the files (relative to it) the notebook reads, hashed into the provenance
        together with the sources recorded in ``study.json``.
    title
        Title of the page and of its line in the index (the notebook's ``title`` figure wins).
    kernel_name
        Jupyter kernel; by default :func:`~pipelines.reports.kernel.ensure_kernel`.
    timeout
        Seconds allowed per cell.
    suppression_k
        Threshold for small counts in ``summary.json``; by default the store's ``suppression_k``.
    pdf
        Also print the page to ``report.pdf`` (headless Chromium, A4 landscape), in the same
        atomic swap as the other files.

    Returns
    -------
    ReportResult

    Raises
    ------
    ReportError
        Bad parameters (before any execution), or a failing cell: the message names the cell,
        the error, and where the failed notebook was saved; the previous report is untouched.
        With ``pdf``, no Chromium (checked before the notebook runs).
    """
    if pdf and find_chromium() is None:
        raise ReportError(f"no Chromium found. {CHROMIUM_HINT}")
    t0 = time.perf_counter()
    run, final = _start(
        Path(notebook),
        kind=kind,
        report_id=report_id,
        parameters=parameters or {},
        reports_dir=Path(reports_dir),
        kernel_name=kernel_name,
        k=suppression_threshold(store, suppression_k),
        t0=t0,
    )
    try:
        _execute(run, timeout=timeout)
        summary = _write_report(run, title=title, store=store, inputs=inputs)
        if pdf:
            print_pdf(run.tmp / "report.html", run.tmp / "report.pdf")
        _swap_into_place(run.tmp, final)
    finally:
        if run.tmp.exists():
            shutil.rmtree(run.tmp, ignore_errors=True)
    write_index(run.root)
    return _result(run, final, summary, pdf=pdf)


def _result(run: _Run, final: Path, summary: dict[str, Any], *, pdf: bool) -> ReportResult:
    """What a finished run wrote (logged with its duration)."""
    seconds = time.perf_counter() - run.t0
    log.info("report %s/%s written in %.1f s", run.kind, run.report_id, seconds)
    return ReportResult(
        kind=run.kind,
        report_id=run.report_id,
        directory=final,
        html=final / "report.html",
        notebook=final / "report.ipynb",
        summary_path=final / "summary.json",
        summary=summary,
        seconds=seconds,
        pdf=final / "report.pdf" if pdf else None,
    )


def _start(
    notebook: Path,
    *,
    kind: str,
    report_id: str,
    parameters: dict[str, Any],
    reports_dir: Path,
    kernel_name: str | None,
    k: int,
    t0: float,
) -> tuple[_Run, Path]:
    """Check the names and parameters, pick the kernel, and make the temporary folder beside
    the report's final one. Returns the run and the final folder."""
    kind = check_id(kind, "report kind")
    report_id = check_id(report_id, "report id")
    params = check_parameters(notebook, parameters)
    kernel = kernel_name or ensure_kernel()
    final = reports_dir / kind / report_id
    final.parent.mkdir(parents=True, exist_ok=True)
    # what killed runs left: their cut swaps finished, their temporary folders removed
    clean_stale(reports_dir, final.parent)
    tmp = temp_sibling(final, "tmp")
    tmp.mkdir()
    return _Run(notebook, kind, report_id, params, kernel, reports_dir, tmp, k, t0), final


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Put the finished report folder in place: old aside, new renamed in, old removed (a swap
    cut by a kill is finished by the next run, :func:`features.store.recover_swap`)."""
    swap_in(tmp, final, tag=tmp.name.rsplit(".tmp-", 1)[1])


def _where(exc: Exception, out_nb: Path) -> str:
    """Where a run failed: the cell (index, execution count, first line), or before/during."""
    cell_index = getattr(exc, "cell_index", None)
    if cell_index is None:
        return "before any cell ran" if not out_nb.exists() else "during execution"
    source = getattr(exc, "source", "") or ""
    first = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    where = f"in cell {cell_index} (execution count {getattr(exc, 'exec_count', None)}"
    return where + (f", starting `{first[:80]}`)" if first else ")")


def _traceback_text(exc: Exception) -> str:
    tb = getattr(exc, "traceback", None)
    text = "\n".join(tb) if isinstance(tb, list) else str(exc)
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _failure(exc: Exception, kind: str, report_id: str, out_nb: Path, root: Path) -> ReportError:
    """Keep the failed notebook and traceback under ``_failed/``; build the error to raise."""
    failed_dir = root / "_failed"
    failed_dir.mkdir(parents=True, exist_ok=True)
    base = failed_dir / f"{kind}-{report_id}-{_stamp()}"
    saved = None
    if out_nb.exists():
        saved = base.with_suffix(".ipynb")
        shutil.copyfile(out_nb, saved)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    where = _where(exc, out_nb)
    base.with_suffix(".error.txt").write_text(
        f"report {kind}/{report_id} failed {where}\n{ename}: {evalue}\n\n{_traceback_text(exc)}\n",
        encoding="utf-8",
    )
    msg = (
        f"report {kind}/{report_id} failed {where}: {ename}: {str(evalue).strip()[:300]}. "
        f"The failed notebook and its traceback are in {failed_dir}"
        + (f" ({saved.name})" if saved else "")
        + "; the previous report, if any, is untouched."
    )
    return ReportError(
        msg,
        cell_index=getattr(exc, "cell_index", None),
        exec_count=getattr(exc, "exec_count", None),
        ename=ename,
        evalue=evalue,
        failed_notebook=str(saved) if saved else None,
    )
