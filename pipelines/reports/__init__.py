"""Reports: parameterised notebooks run by papermill, their figures, maps and the schedule.

One subject per module, read in this order:

- :mod:`~pipelines.reports.catalog` the project's reports (weekly, event brief, evaluation,
  exploration): which notebook, which parameters, which store files it reads;
- :mod:`~pipelines.reports.runner` runs one notebook and swaps its report folder into place;
- :mod:`~pipelines.reports.kernel` the Jupyter kernel and the check of the parameters;
- :mod:`~pipelines.reports.export` the executed notebook to one offline HTML page, and the
  summary payloads the notebook emitted;
- :mod:`~pipelines.reports.provenance` hashes of the inputs, notebook and code version;
- :mod:`~pipelines.reports.index` the reports' ``index.html``;
- :mod:`~pipelines.reports.errors` :class:`~pipelines.reports.errors.ReportError`;
- :mod:`~pipelines.reports.publish` small-count suppression and display helpers;
- what the notebooks show: :mod:`~pipelines.reports.figures` (store products),
  :mod:`~pipelines.reports.weekly`, :mod:`~pipelines.reports.exploration` and
  :mod:`~pipelines.reports.maps`;
- the schedule: :mod:`~pipelines.reports.due` (what is due), :mod:`~pipelines.reports.jobs`
  (the functions each job calls), :mod:`~pipelines.reports.ledger` (ledger and lock) and
  :mod:`~pipelines.reports.schedule` (runs it).

This ``__init__`` re-exports nothing: import from the submodules.
"""
