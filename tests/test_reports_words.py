"""Codes shown in words in report tables, the data keeping the codes (issue 15)."""

from __future__ import annotations

import pandas as pd

from pipelines.reports.labels import MODEL_WORDS, codes_in_words
from pipelines.reports.publish import table


def test_model_codes_read_in_words_in_tables_only():
    df = pd.DataFrame(
        {
            "model": ["zone_glm", "seasonal_naive_8w", "mystery"],
            "zone_id": ["Z1", "Z2", "Z3"],
            "poisson_deviance": [1.1, 1.3, 1.4],
        }
    )
    html = table(df, k=10, zones={"Z1": "Gare du Nord"}).to_html()
    assert "zone rate model (GLM, zone effects)" in html and "seasonal naive (8 weeks)" in html
    assert "mystery" in html  # an unknown code is kept
    assert "Gare du Nord (Z1)" in html
    assert ">zone_glm<" not in html and "seasonal_naive_8w" not in html
    assert list(df["model"]) == ["zone_glm", "seasonal_naive_8w", "mystery"]  # data unchanged


def test_every_backtest_model_has_words():
    from pipelines.models import backtest

    assert set(backtest.MODELS) <= set(MODEL_WORDS)
    out = codes_in_words(pd.DataFrame({"model": list(backtest.MODELS)}))
    assert not any("_" in m for m in out["model"])


def test_evaluation_charts_name_the_models_in_words():
    """The evaluation report's bar charts and by-origin lines name models in words, not codes."""
    from pipelines.reports.figures import model_words

    codes = pd.Series(["zone_glm", "seasonal_naive_8w", "a_new_model"])
    assert list(model_words(codes)) == [
        MODEL_WORDS["zone_glm"],
        "seasonal naive (8 weeks)",
        "a_new_model",  # unknown codes kept
    ]
