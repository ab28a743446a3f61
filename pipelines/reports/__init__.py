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
- :mod:`~pipelines.reports.publish` small-count suppression and display helpers;
- :mod:`~pipelines.reports.figures` and :mod:`~pipelines.reports.maps` what the notebooks show;
- :mod:`~pipelines.reports.schedule` (with :mod:`~pipelines.reports.jobs`) runs what is due.

This ``__init__`` re-exports nothing: import from the submodules.
"""
