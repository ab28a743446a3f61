"""vigie: public-safety data-science workbench.

The code lives in two packages: :mod:`features` (what the data is) and :mod:`pipelines` (what is
done with it); see docs/design.md. This package only gives ``python -m vigie``.
"""
