"""Reports: parameterised notebooks run by papermill, exported to one self-contained HTML file.

A report is a notebook of ``notebooks/`` run like a function (Ploomber's view of a parameterised
notebook): the parameters passed are checked against the notebook's cell tagged ``parameters``
(``papermill.inspect_notebook``) before anything runs, since papermill itself only warns on an
unknown name; the kernel is always named explicitly (a stripped notebook may carry none); the
executed notebook is exported with nbconvert's ``HTMLExporter(exclude_input=True)`` so the
reader sees figures, tables, maps and text but no code.

Layout written::

    reports/
      index.html                     every report, newest first
      <kind>/<id>/report.html        code hidden, maps inline (opens with no network)
      <kind>/<id>/report.ipynb       the executed notebook
      <kind>/<id>/summary.json       the figures shown (small counts suppressed) + provenance
      _failed/<kind>-<id>-<UTC stamp>.ipynb and .error.txt   failed runs, kept for diagnosis

Atomicity: a run builds its report in a temporary folder beside the target and renames it into
place only when the notebook ran and exported; a failed run leaves the previous report intact,
copies the failed notebook and its traceback under ``reports/_failed/`` and raises
:class:`ReportError` naming the failing cell. The swap of an existing report is two renames
(old aside, new in place) on the same file system, so a reader sees either report whole.

The figures of ``summary.json`` come from the notebook itself: cells call
:func:`pipelines.reports.publish.emit_summary`, which displays a JSON payload with the MIME type
:data:`SUMMARY_MIME`; the runner merges these payloads in order, strips them from the HTML,
applies small-count suppression once more and adds provenance (input files and their SHA-256,
code version, parameters, kernel).

References
----------
papermill: https://papermill.readthedocs.io (parameters, ``inspect_notebook``, kernels).
nbconvert ``--no-input``: https://nbconvert.readthedocs.io (``TemplateExporter.exclude_input``).
Ploomber, "notebooks as functions": https://docs.ploomber.io.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import logging
import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.errors import VigieError
from features.timeutil import parse_iso_week
from pipelines.reports.publish import SUMMARY_MIME, find_unsuppressed, suppress_json

log = logging.getLogger(__name__)

#: the project's notebooks folder (beside the ``pipelines`` package)
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"

#: report kind -> notebook file in :data:`NOTEBOOK_DIR`
KINDS: dict[str, str] = {
    "weekly": "weekly_report.ipynb",
    "event-brief": "event_brief.ipynb",
    "evaluation": "model_evaluation.ipynb",
    "explore": "explore.ipynb",
}

KERNEL_NAME = "vigie"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")


class ReportError(VigieError):
    """A report could not be produced (bad parameters, notebook failure, export failure).

    Attributes
    ----------
    cell_index, exec_count
        Where the notebook failed (index in the executed notebook, execution count), if it did.
    ename, evalue
        The exception raised in the kernel.
    failed_notebook
        Path of the failed notebook saved under ``reports/_failed/``.
    """

    def __init__(
        self,
        message: str,
        *,
        cell_index: int | None = None,
        exec_count: int | None = None,
        ename: str | None = None,
        evalue: str | None = None,
        failed_notebook: str | None = None,
    ) -> None:
        super().__init__(message, file=failed_notebook)
        self.cell_index = cell_index
        self.exec_count = exec_count
        self.ename = ename
        self.evalue = evalue
        self.failed_notebook = failed_notebook


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
    """

    kind: str
    report_id: str
    directory: Path
    html: Path
    notebook: Path
    summary_path: Path
    summary: dict[str, Any] = field(repr=False)
    seconds: float


# -- kernel ---------------------------------------------------------------------------------------
def _same_python(argv0: str) -> bool:
    try:
        return Path(argv0).absolute() == Path(sys.executable).absolute()
    except (TypeError, ValueError):
        return False


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Name of a Jupyter kernel that runs this very interpreter, registering one if needed.

    A kernelspec called ``name`` whose ``argv[0]`` is ``sys.executable`` is used as it is. When
    there is none, one is installed (``ipykernel install``) into the virtual environment's
    ``share/jupyter`` (or the user's Jupyter folder outside a venv). When ``name`` exists but
    runs another interpreter (another checkout's venv), an interpreter-specific
    ``name-<hash>`` kernel is used instead, so a report never runs with the wrong packages.

    Returns
    -------
    str
        The kernel name to pass to papermill.
    """
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    ksm = KernelSpecManager()
    candidates = [name, f"{name}-{hashlib.sha1(sys.executable.encode()).hexdigest()[:8]}"]
    for cand in candidates:
        try:
            spec = ksm.get_kernel_spec(cand)
        except NoSuchKernel:
            chosen = cand
            break
        if spec.argv and _same_python(spec.argv[0]):
            return cand
    else:  # pragma: no cover - both names taken by other interpreters
        chosen = candidates[1]
    in_venv = sys.prefix != sys.base_prefix and os.access(sys.prefix, os.W_OK)
    kwargs: dict[str, Any] = {"prefix": sys.prefix} if in_venv else {"user": True}
    install(kernel_name=chosen, display_name=f"Python ({chosen})", **kwargs)
    log.info("registered Jupyter kernel %r for %s", chosen, sys.executable)
    return chosen


# -- parameters -----------------------------------------------------------------------------------
def notebook_parameters(notebook: str | Path) -> dict[str, dict[str, Any]]:
    """The parameters a notebook declares (``papermill.inspect_notebook``).

    Raises
    ------
    ReportError
        When the notebook is missing or has no cell tagged ``parameters``.
    """
    import papermill as pm

    path = Path(notebook)
    if not path.exists():
        raise ReportError(f"{path}: no such notebook.")
    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises several types for unreadable files
        raise ReportError(f"{path}: not a readable Jupyter notebook ({exc}).") from None
    if nb.metadata.get("kernelspec", {}).get("name"):
        params = pm.inspect_notebook(str(path))
    else:
        # papermill's inspection needs a kernel name to pick the language translator; a
        # stripped notebook may carry none, so inspect a copy that names a Python kernel
        import tempfile

        nb.metadata["kernelspec"] = {
            "name": "python3",
            "language": "python",
            "display_name": "Python 3",
        }
        with tempfile.TemporaryDirectory() as td:
            copy = Path(td) / path.name
            nbformat.write(nb, str(copy))
            params = pm.inspect_notebook(str(copy))
    if not params:
        raise ReportError(
            f"{path}: the notebook has no cell tagged 'parameters'; a report notebook declares "
            "every parameter with a default in one cell tagged 'parameters'."
        )
    return params


def check_parameters(notebook: str | Path, parameters: dict[str, Any]) -> dict[str, Any]:
    """Check ``parameters`` against the notebook's ``parameters`` cell before running it.

    Every name must be declared by the notebook, and every value must be a plain literal
    (str, int, float, bool, None, or lists/dicts of them) that papermill can write as code.

    Returns
    -------
    dict
        The parameters, unchanged, when they are valid.

    Raises
    ------
    ReportError
        Naming the unknown parameters and the ones the notebook expects.
    """
    declared = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        expected = ", ".join(
            f"{n} (default {p.get('default')})" for n, p in sorted(declared.items())
        )
        raise ReportError(
            f"{Path(notebook).name}: unknown parameter(s) {', '.join(unknown)}; the notebook's "
            f"parameters cell declares: {expected}."
        )

    def plain(v: Any) -> bool:
        if v is None or isinstance(v, (str, int, float, bool)):
            return True
        if isinstance(v, (list, tuple)):
            return all(plain(x) for x in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        return False

    for n, v in parameters.items():
        if not plain(v):
            raise ReportError(
                f"{Path(notebook).name}: parameter {n} must be a plain value (text, number, "
                f"true/false, a list or a mapping of them), got {type(v).__name__}."
            )
    return dict(parameters)


# -- provenance -----------------------------------------------------------------------------------
def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def code_version() -> dict[str, Any]:
    """The code's version: the package version and, in a git checkout, the commit (read-only)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("vigie")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        pkg = None
    return {"vigie": pkg, "git_commit": _git_commit(Path(__file__).resolve().parents[2])}


def _git_commit(root: Path) -> str | None:
    """The checked-out commit, read from ``.git`` files (no git process is run)."""
    gitdir = root / ".git"
    try:
        if gitdir.is_file():  # worktree: "gitdir: <path>"
            gitdir = (root / gitdir.read_text().split(":", 1)[1].strip()).resolve()
        head = (gitdir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(None, 1)[1]
        common = gitdir
        if (gitdir / "commondir").exists():
            common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
        for base in (gitdir, common):
            if (base / ref).exists():
                return (base / ref).read_text().strip()
        packed = common / "packed-refs"
        if packed.exists():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0]
    except OSError:
        return None
    return None


def input_files(store: str | Path, relpaths: list[str]) -> list[dict[str, Any]]:
    """Provenance of the store files a report reads: path, SHA-256 (or ``absent``)."""
    root = Path(store)
    out = []
    for rel in relpaths:
        p = root / rel
        if p.is_file():
            out.append({"path": rel, "sha256": sha256_file(p), "bytes": p.stat().st_size})
        else:
            out.append({"path": rel, "sha256": None, "absent": True})
    return out


# -- running --------------------------------------------------------------------------------------
def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ReportError(
            f"{what} {value!r} is not usable as a folder name; expected letters, digits, '.', "
            "'_' or '-' (at most 128, not starting with '.', '_' or '-')."
        )
    return value


def _summaries(nb: Any) -> tuple[dict[str, Any], int]:
    """Merge the summary payloads the notebook emitted, and remove them from its outputs."""
    merged: dict[str, Any] = {}
    n = 0
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {}) if out.get("output_type") in ("display_data",) else {}
            if SUMMARY_MIME in data:
                payload = data[SUMMARY_MIME]
                if isinstance(payload, str):
                    payload = json.loads(payload)
                merged.update(payload)
                n += 1
            else:
                kept.append(out)
        cell["outputs"] = kept
    return merged, n


_EXTERNAL_TAG = re.compile(
    r"<script\b[^>]*\bsrc\s*=\s*[\"']https?://[^\"']*[\"'][^>]*>\s*</script>"
    r"|<link\b[^>]*\bhref\s*=\s*[\"']https?://[^\"']*[\"'][^>]*/?>",
    re.IGNORECASE,
)


def external_resources(page: str) -> list[str]:
    """Scripts and styles a page would load from the network (should be empty for a report).

    Looks at ``<script src>`` and ``<link href>`` in the page and in the ``srcdoc`` of its
    iframes (where folium maps live).
    """
    found = [m.group(0) for m in _EXTERNAL_TAG.finditer(page)]
    for doc in re.findall(r'srcdoc="([^"]*)"', page):
        found += [m.group(0) for m in _EXTERNAL_TAG.finditer(html.unescape(doc))]
    return found


def export_html(nb: Any, *, title: str) -> str:
    """The executed notebook as one HTML page with code hidden and no network resources.

    nbconvert's ``lab`` template with ``exclude_input=True`` (the ``--no-input`` flag); the
    MathJax, require.js and mermaid loaders it links from CDNs are dropped (reports carry no
    LaTeX, widgets or diagrams), so the page opens on a network without internet.
    """
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    nb.metadata["title"] = title
    body, _ = exporter.from_notebook_node(nb)
    body = _EXTERNAL_TAG.sub("", body)
    # MathJax is configured by an inline script that only makes sense with MathJax loaded
    body = re.sub(
        r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", "", body, flags=re.S
    )
    # the mermaid loader imports its library from a CDN (only when a diagram is present)
    body = re.sub(
        r"<script type=\"module\">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*</script>",
        "",
        body,
        flags=re.S,
    )
    return body


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


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
) -> ReportResult:
    """Run one parameterised notebook with papermill and write its report atomically.

    Parameters
    ----------
    notebook
        The notebook to run (a cell tagged ``parameters`` is required).
    kind, report_id
        The report lands in ``reports_dir/<kind>/<report_id>/``.
    parameters
        Values for the notebook's parameters; checked with :func:`check_parameters` first.
    reports_dir
        Root of the reports tree; ``index.html`` there is regenerated.
    store, inputs
        The store and the files (relative to it) the notebook reads, hashed into the provenance
        together with the sources recorded in ``study.json``.
    title
        Title of the page and of its line in the index (the notebook's ``title`` figure wins).
    kernel_name
        Jupyter kernel; by default :func:`ensure_kernel` (this interpreter).
    timeout
        Seconds allowed per cell.
    suppression_k
        Threshold for small counts in ``summary.json``; by default the store's ``suppression_k``.

    Returns
    -------
    ReportResult

    Raises
    ------
    ReportError
        Bad parameters (before any execution), or a failing cell: the message names the cell,
        the error, and where the failed notebook was saved; the previous report is untouched.
    """
    import nbformat
    import papermill as pm

    t0 = time.perf_counter()
    notebook = Path(notebook)
    kind = _check_id(kind, "report kind")
    report_id = _check_id(report_id, "report id")
    params = check_parameters(notebook, parameters or {})
    kernel = kernel_name or ensure_kernel()
    root = Path(reports_dir)
    final = root / kind / report_id
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{report_id}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    out_nb = tmp / "report.ipynb"
    project_root = NOTEBOOK_DIR.parent
    cwd = project_root if notebook.resolve().parent == NOTEBOOK_DIR else notebook.resolve().parent
    k = suppression_k
    if k is None and store is not None and (Path(store) / "study.json").exists():
        k = int(json.loads((Path(store) / "study.json").read_text()).get("suppression_k", 10))
    k = 10 if k is None else int(k)
    try:
        try:
            pm.execute_notebook(
                str(notebook),
                str(out_nb),
                parameters=params,
                kernel_name=kernel,
                language="python",
                progress_bar=False,
                log_output=False,
                cwd=str(cwd),
                execution_timeout=timeout,
            )
        except Exception as exc:  # a failing cell, a dead kernel, a timeout...
            err = _failure(exc, kind, report_id, out_nb, root)
            write_index(root)
            raise err from None

        nb = nbformat.read(str(out_nb), as_version=4)
        figures, n_payloads = _summaries(nb)
        figures = suppress_json(figures, k)
        page_title = str(figures.get("title") or title or f"{kind} {report_id}")
        page = export_html(nb, title=page_title)
        (tmp / "report.html").write_text(page, encoding="utf-8")
        provenance: dict[str, Any] = {
            "parameters": params,
            "notebook": {"path": notebook.name, "sha256": sha256_file(notebook)},
            "kernel": kernel,
            "python": sys.version.split()[0],
            "papermill": pm.__version__,
            "code_version": code_version(),
        }
        if store is not None:
            provenance["store"] = str(Path(store).resolve())
            provenance["inputs"] = input_files(store, ["study.json", *(inputs or [])])
            study_path = Path(store) / "study.json"
            if study_path.exists():
                provenance["sources"] = json.loads(study_path.read_text()).get("sources", {})
        summary = {
            "kind": kind,
            "id": report_id,
            "title": page_title,
            "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "suppression_k": k,
            "figures": figures,
            "figures_emitted": n_payloads,
            "provenance": provenance,
            "duration_s": round(time.perf_counter() - t0, 2),
        }
        bad = find_unsuppressed(summary["figures"], k)
        if bad:  # pragma: no cover - suppress_json makes this impossible
            raise ReportError(f"summary has unsuppressed small counts at {bad[:5]}")
        (tmp / "summary.json").write_text(
            json.dumps(summary, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
        )
        # the executed notebook keeps the summary outputs stripped too (they are in summary.json)
        nbformat.write(nb, str(out_nb))
        _swap_into_place(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    write_index(root)
    seconds = time.perf_counter() - t0
    log.info("report %s/%s written in %.1f s", kind, report_id, seconds)
    return ReportResult(
        kind=kind,
        report_id=report_id,
        directory=final,
        html=final / "report.html",
        notebook=final / "report.ipynb",
        summary_path=final / "summary.json",
        summary=summary,
        seconds=seconds,
    )


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Put the finished report folder in place: old aside, new renamed in, old removed."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        final.rename(old)
    try:
        tmp.rename(final)
    except OSError:
        if old is not None:
            old.rename(final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _failure(exc: Exception, kind: str, report_id: str, out_nb: Path, root: Path) -> ReportError:
    """Keep the failed notebook and traceback under ``_failed/``; build the error to raise."""
    failed_dir = root / "_failed"
    failed_dir.mkdir(parents=True, exist_ok=True)
    base = failed_dir / f"{kind}-{report_id}-{_stamp()}"
    saved = None
    if out_nb.exists():
        saved = base.with_suffix(".ipynb")
        shutil.copyfile(out_nb, saved)
    cell_index = getattr(exc, "cell_index", None)
    exec_count = getattr(exc, "exec_count", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    source = getattr(exc, "source", "") or ""
    first = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    if cell_index is not None:
        where = f"in cell {cell_index} (execution count {exec_count}"
        where += f", starting `{first[:80]}`)" if first else ")"
    else:
        where = "before any cell ran" if not out_nb.exists() else "during execution"
    tb = getattr(exc, "traceback", None)
    text = "\n".join(tb) if isinstance(tb, list) else str(exc)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    base.with_suffix(".error.txt").write_text(
        f"report {kind}/{report_id} failed {where}\n{ename}: {evalue}\n\n{text}\n",
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
        cell_index=cell_index,
        exec_count=exec_count,
        ename=ename,
        evalue=evalue,
        failed_notebook=str(saved) if saved else None,
    )


# -- index ----------------------------------------------------------------------------------------
def list_reports(reports_dir: str | Path) -> list[dict[str, Any]]:
    """Every report under ``reports_dir`` (from its summary.json), newest first."""
    root = Path(reports_dir)
    rows = []
    for summ in root.glob("*/*/summary.json"):
        kind_dir = summ.parent.parent.name
        if kind_dir.startswith(("_", ".")) or summ.parent.name.startswith((".", "_")):
            continue
        try:
            s = json.loads(summ.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        rows.append(
            {
                "kind": s.get("kind", kind_dir),
                "id": s.get("id", summ.parent.name),
                "title": s.get("title", summ.parent.name),
                "generated_at": s.get("generated_at", ""),
                "href": f"{summ.parent.parent.name}/{summ.parent.name}/report.html",
                "parameters": s.get("provenance", {}).get("parameters", {}),
            }
        )
    rows.sort(key=lambda r: (r["generated_at"], r["kind"], r["id"]), reverse=True)
    return rows


def write_index(reports_dir: str | Path) -> Path:
    """Regenerate ``reports_dir/index.html``: one line per report, newest first (atomic write)."""
    root = Path(reports_dir)
    root.mkdir(parents=True, exist_ok=True)
    rows = list_reports(root)
    failed = sorted((root / "_failed").glob("*.error.txt"), reverse=True)[:20]
    esc = html.escape
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>vigie reports</title>',
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;width:100%}td,th{padding:.3em .6em;"
        "border-bottom:1px solid #ddd;text-align:left}th{background:#f4f4f4}"
        ".muted{color:#777;font-size:.9em}</style></head><body>",
        "<h1>vigie reports</h1>",
        f'<p class="muted">{len(rows)} report(s), newest first. Generated '
        f"{esc(dt.datetime.now(dt.UTC).isoformat(timespec='seconds'))}.</p>",
        "<table><thead><tr><th>generated (UTC)</th><th>kind</th><th>report</th>"
        "<th>parameters</th></tr></thead><tbody>",
    ]
    for r in rows:
        params = ", ".join(
            f"{k}={v}" for k, v in r["parameters"].items() if k not in ("store", "reports_dir")
        )
        lines.append(
            f"<tr><td>{esc(str(r['generated_at']))}</td><td>{esc(str(r['kind']))}</td>"
            f'<td><a href="{esc(r["href"])}">{esc(str(r["title"]))}</a></td>'
            f'<td class="muted">{esc(params)}</td></tr>'
        )
    lines.append("</tbody></table>")
    if failed:
        lines.append("<h2>Recent failed runs</h2><ul>")
        for f in failed:
            first = f.read_text(encoding="utf-8", errors="replace").splitlines()[:2]
            lines.append(
                f'<li><a href="_failed/{esc(f.name)}">{esc(f.name)}</a> '
                f'<span class="muted">{esc(" — ".join(first))}</span></li>'
            )
        lines.append("</ul>")
    lines.append("</body></html>")
    path = root / "index.html"
    tmp = root / f".index.html.tmp-{uuid.uuid4().hex[:8]}"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# -- the project's reports ------------------------------------------------------------------------
def _notebook(kind: str, notebook_dir: str | Path | None) -> Path:
    return Path(notebook_dir or NOTEBOOK_DIR) / KINDS[kind]


def _require_store(store: str | Path) -> Path:
    root = Path(store)
    if not (root / "study.json").exists():
        raise ReportError(
            f"{root}: not a vigie store (no study.json); run `vigie ingest SOURCES.yaml "
            f"--store {root}` first."
        )
    return root.resolve()


def report_weekly(
    store: str | Path,
    *,
    week: str,
    reports_dir: str | Path = "reports",
    notebook_dir: str | Path | None = None,
    kernel_name: str | None = None,
) -> ReportResult:
    """The weekly report of ISO week ``week`` (``reports/weekly/<week>/``)."""
    root = _require_store(store)
    parse_iso_week(week)
    return run_notebook(
        _notebook("weekly", notebook_dir),
        kind="weekly",
        report_id=week,
        parameters={"store": str(root), "week": week},
        reports_dir=reports_dir,
        store=root,
        inputs=[
            "cube_meta.json",
            "models/evaluation.json",
            "models/effects.json",
            f"signals/{week}.json",
        ],
        title=f"Weekly report {week}",
        kernel_name=kernel_name,
    )


def report_brief(
    store: str | Path,
    event_id: str,
    *,
    reports_dir: str | Path = "reports",
    notebook_dir: str | Path | None = None,
    kernel_name: str | None = None,
) -> ReportResult:
    """The planning brief of an event of the store (``reports/event-brief/<key>/``).

    ``event_id`` is the event's id as the store holds it; the brief's file and the report's
    folder are named by :func:`pipelines.events.brief.brief_key` (unsafe characters replaced), as
    :func:`pipelines.events.brief.make_brief` names them.
    """
    from pipelines.events.brief import brief_key

    root = _require_store(store)
    key = _check_id(brief_key(event_id), "event id")
    return run_notebook(
        _notebook("event-brief", notebook_dir),
        kind="event-brief",
        report_id=key,
        parameters={"store": str(root), "event_id": key},
        reports_dir=reports_dir,
        store=root,
        inputs=["cube_meta.json", "validated/events.parquet", f"briefs/{key}.json"],
        title=f"Event brief {key}",
        kernel_name=kernel_name,
    )


def report_evaluation(
    store: str | Path,
    *,
    reports_dir: str | Path = "reports",
    report_id: str | None = None,
    notebook_dir: str | Path | None = None,
    kernel_name: str | None = None,
) -> ReportResult:
    """The model evaluation (``reports/evaluation/<date>/`` by default)."""
    root = _require_store(store)
    rid = report_id or dt.date.today().isoformat()
    return run_notebook(
        _notebook("evaluation", notebook_dir),
        kind="evaluation",
        report_id=rid,
        parameters={"store": str(root)},
        reports_dir=reports_dir,
        store=root,
        inputs=["cube_meta.json", "models/evaluation.json", "models/effects.json"],
        title=f"Model evaluation {rid}",
        kernel_name=kernel_name,
    )


def report_explore(
    store: str | Path,
    *,
    reports_dir: str | Path = "reports",
    report_id: str | None = None,
    notebook_dir: str | Path | None = None,
    kernel_name: str | None = None,
) -> ReportResult:
    """The exploration notebook, run on a store (``reports/explore/<date>/``)."""
    root = _require_store(store)
    rid = report_id or dt.date.today().isoformat()
    return run_notebook(
        _notebook("explore", notebook_dir),
        kind="explore",
        report_id=rid,
        parameters={"store": str(root)},
        reports_dir=reports_dir,
        store=root,
        inputs=["cube_meta.json"],
        title=f"Exploration {rid}",
        kernel_name=kernel_name,
    )
