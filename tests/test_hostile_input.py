"""Hostile input, probed as an attacker would (issue 14): YAML that runs code or explodes, ids
that try to become paths, ids that hide a duplicate, and numbers that are not numbers.

Each test pins a refusal (a clear message, exit code 2 on the command line) or a quarantine
with its reason; nothing is lost silently and nothing runs."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from features.config import MAX_YAML_BYTES, load_study, read_yaml
from features.errors import ConfigError, InputError
from features.ingest import ingest
from features.paths import MAX_KEY, distinct_keys, file_key, inside
from features.store import Store
from pipelines.cli import app

BOMB = """area: {name: bomb, timezone: UTC}
incidents:
  path: incidents.csv
  constants:
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def _yaml(d: Path, text: str) -> Path:
    p = d / "sources.yaml"
    p.write_text(text, encoding="utf-8")
    return p


# -- YAML ------------------------------------------------------------------------------------------


def test_yaml_python_tags_are_refused_and_nothing_runs(tmp_path: Path):
    marker = tmp_path / "pwned"
    p = _yaml(tmp_path, f'area: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match=r"sources.yaml: not valid YAML.*python/object"):
        load_study(p)
    assert not marker.exists()
    ev = tmp_path / "event.yaml"
    ev.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match="could not determine a constructor"):
        read_yaml(ev)
    assert not marker.exists()


def test_alias_bomb_under_constants_is_refused_fast(tmp_path: Path):
    """The bomb expands to 9**9 (387 million) strings: refused from the parsed graph, before
    anything is built, in well under a second of work."""
    p = _yaml(tmp_path, BOMB)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases are expanded"):
        load_study(p)
    assert time.perf_counter() - t0 < 5
    res = CliRunner().invoke(app, ["ingest", str(p), "--store", str(tmp_path / "store")])
    assert res.exit_code == 2
    assert "alias bomb" in res.output and "Traceback" not in res.output


def test_self_referring_alias_and_deep_nesting_are_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="refers to itself"):
        load_study(_yaml(tmp_path, "area: &a {name: [*a]}\n"))
    with pytest.raises(ConfigError, match="sources.yaml"):
        load_study(_yaml(tmp_path, "area: " + "[" * 5000 + "]" * 5000 + "\n"))


def test_huge_yaml_is_refused_before_it_is_parsed(tmp_path: Path):
    p = _yaml(tmp_path, "area: {name: x}\n# " + "x" * MAX_YAML_BYTES + "\n")
    with pytest.raises(ConfigError, match=r"more than the 1,048,576 a YAML file"):
        load_study(p)


def test_overlong_area_name_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"area.name: String should have at most 200"):
        load_study(_yaml(tmp_path, f"area: {{name: '{'x' * 5000}'}}\n"))


def test_unknown_constant_names_the_closest_column(tmp_path: Path):
    p = _yaml(tmp_path, "incidents: {path: a.csv, constants: {categroy: theft}}\n")
    with pytest.raises(ConfigError, match=r"incidents.constants names 'categroy'.*'category'"):
        load_study(p)
    res = CliRunner().invoke(app, ["ingest", str(p), "--store", str(tmp_path / "store")])
    assert res.exit_code == 2, res.output
    assert "did you mean 'category'" in res.output and "internal error" not in res.output
    p = _yaml(tmp_path, "incidents: {path: a.csv, constants: {category: [a, b]}}\n")
    with pytest.raises(ConfigError, match="must be one value"):
        load_study(p)


# -- paths -----------------------------------------------------------------------------------------

SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@pytest.mark.parametrize(
    "text, key",
    [
        ("/etc/passwd", "etc-passwd"),
        ("a/../../b", "a-..-..-b"),
        ("C:\\x", "C-x"),
        ("a\x00b", "a-b"),
        ("Fête", "Fete"),
        ("a/b", "a-b"),
        ("a?b", "a-b"),
    ],
)
def test_file_key_slugs_what_would_leave_the_folder(tmp_path: Path, text: str, key: str):
    assert file_key(text) == key
    assert inside(tmp_path, key + ".json").parent == tmp_path


@pytest.mark.parametrize(
    "text", [".hidden", "..", "../../etc/passwd", "..\\..\\x", "-", "", "\x00", "x" * (MAX_KEY + 1)]
)
def test_file_key_refuses_hidden_empty_and_overlong(text: str):
    with pytest.raises(InputError, match="event id"):
        file_key(text, what="event id")


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a\\b", "a\x00b", "", ".", "x/../../y"])
def test_inside_refuses_names_that_leave_the_folder(tmp_path: Path, name: str):
    with pytest.raises(InputError):
        inside(tmp_path / "briefs", name)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_safe_key_or_a_clear_refusal(text: str):
    """Any text (hypothesis: every Unicode category, NUL, surrogates) either makes a key of the
    safe alphabet, at most MAX_KEY long, never hidden, or is refused with an InputError."""
    try:
        key = file_key(text)
    except InputError as exc:
        assert "id" in str(exc)
        return
    assert SAFE.fullmatch(key), key
    assert inside("/tmp/briefs", key + ".json") == Path("/tmp/briefs") / f"{key}.json"


def test_distinct_keys_refuses_two_ids_with_one_name():
    assert distinct_keys(["a/b", "a/b", "c"]) == {"a/b": "a-b", "c": "c"}
    with pytest.raises(InputError, match=r"'a/b' and 'a\?b' both make the file name 'a-b'"):
        distinct_keys(["a/b", "a?b"], what="event id")
    with pytest.raises(InputError, match="both make the file name"):
        distinct_keys(["Gala", "gala"])  # one file on macOS and Windows


# -- ids at ingest ---------------------------------------------------------------------------------


def _ingest(d: Path, source: str, frame: pd.DataFrame, extra: str = "") -> tuple[dict, Path]:
    frame.to_csv(d / f"{source}.csv", index=False)
    p = _yaml(d, f"area: {{timezone: Europe/Paris}}\n{source}: {{path: {source}.csv{extra}}}\n")
    res = ingest(p, d / "store", force=True).sources[source]
    return {"rows_read": res.rows_read, "rows_kept": res.rows_kept}, d / "store"


def _quarantine(store: Path, source: str) -> pd.DataFrame:
    return pd.read_csv(store / "quarantine" / f"{source}.csv", dtype=str, keep_default_na=False)


def test_event_ids_sharing_a_file_name_are_quarantined_naming_both(tmp_path: Path):
    ids = ["a/b", "a?b", ".hidden", "x" * 300, "ok", "OK"]
    ev = pd.DataFrame(
        {
            "event_id": ids,
            "name": "gig",
            "start": "2026-05-01 20:00",
            "end": "2026-05-01 23:00",
            "latitude": 48.86,
            "longitude": 2.35,
            "expected_attendance": 500,
            "category": "concert",
        }
    )
    res, store = _ingest(tmp_path, "events", ev)
    assert res["rows_read"] == 6 and res["rows_kept"] == 2
    kept = set(Store(store).validated("events")["event_id"])
    assert kept == {"a/b", "ok"}
    q = _quarantine(store, "events")
    why = dict(zip(q["event_id"].str[:10], q["reason"]))
    assert "same file name as another event ('a-b', as event 'a/b')" in why["a?b"]
    assert "same file name as another event ('OK', as event 'ok')" in why["OK"]
    assert "cannot name a file (hidden or empty)" in why[".hidden"]
    assert f"cannot name a file (over {MAX_KEY} characters)" in why["x" * 10]


def test_a_bom_prefixed_duplicate_id_is_caught(tmp_path: Path):
    inc = pd.DataFrame(
        {
            "incident_id": ["X1", "\ufeffX1", "X2\ufeff", "X\x003", "X4"],
            "occurred_at": "2026-05-01 20:00",
            "latitude": 48.86,
            "longitude": 2.35,
            "category": "theft",
        }
    )
    res, store = _ingest(tmp_path, "incidents", inc)
    assert res["rows_read"] == 5 and res["rows_kept"] == 3
    kept = Store(store).validated("incidents")["incident_id"].tolist()
    assert kept == ["X1", "X2", "X4"]
    q = _quarantine(store, "incidents")
    assert q["reason"].tolist() == [
        "duplicate incident_id (X1)",
        "incident_id: holds a NUL byte (X\\03)",
    ]


# -- numbers ---------------------------------------------------------------------------------------


def test_non_finite_and_absurd_presence_is_quarantined_with_its_reason(tmp_path: Path):
    p = pd.DataFrame(
        {
            "zone_id": ["881fb46607fffff"] * 8,  # an H3 cell: no zones file needed
            "start": [f"2026-05-01 {h:02d}:00" for h in range(8)],
            "present": ["inf", "1e308", "NaN", "-5", "1e400", "-inf", "1200", "12,5"],
        }
    )
    res, store = _ingest(tmp_path, "presence", p, ", columns: {zone_id: zone_id}, slot_minutes: 60")
    assert res["rows_read"] == 8 and res["rows_kept"] == 2
    kept = Store(store).validated("presence")
    assert kept["present"].tolist() == [1200.0, 12.5]
    reasons = _quarantine(store, "presence")["reason"].tolist()
    assert reasons == [
        "present: not a finite number (inf)",
        "present: present must be <= 1e+08 (1e+308)",
        "present: not a number (NaN)",
        "present: present must be >= 0 (-5.0)",
        "present: not a finite number (1e400)",
        "present: not a finite number (-inf)",
    ]


# -- the brief's file names (command line) ---------------------------------------------------------


@pytest.fixture(scope="module")
def brief_store(tmp_path_factory) -> Store:
    from test_brief import make_store

    return make_store(tmp_path_factory.mktemp("hostile_brief") / "store")


def _event_yaml(d: Path, event_id: str, name: str = "ev.yaml") -> Path:
    from test_brief import _concert

    p = d / name
    p.write_text(json.dumps({**_concert(), "event_id": event_id}), encoding="utf-8")
    return p


def _brief(store: Store, event: Path, reports: Path):
    return CliRunner().invoke(
        app,
        ["brief", str(event), "--store", str(store.root), "--no-report", "--reports", str(reports)],
    )


@pytest.mark.parametrize(
    "event_id, message", [("." + "x", "hidden"), ("y" * 300, "300 characters")]
)
def test_overlong_and_dot_leading_ids_exit_2(brief_store: Store, tmp_path: Path, event_id, message):
    res = _brief(brief_store, _event_yaml(tmp_path, event_id), tmp_path / "reports")
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not list((brief_store.root / "briefs").glob(".*"))


def test_two_event_ids_with_one_file_name_are_refused_naming_both(brief_store: Store, tmp_path):
    first = _brief(brief_store, _event_yaml(tmp_path, "gala/2026", "a.yaml"), tmp_path / "r")
    assert first.exit_code == 0, first.output
    path = brief_store.brief_path("gala-2026")
    before = path.read_bytes()
    second = _brief(brief_store, _event_yaml(tmp_path, "gala?2026", "b.yaml"), tmp_path / "r")
    assert second.exit_code == 2, second.output
    assert "'gala/2026' and 'gala?2026'" in second.output
    assert path.read_bytes() == before
    again = _brief(brief_store, _event_yaml(tmp_path, "gala/2026", "c.yaml"), tmp_path / "r")
    assert again.exit_code == 0, again.output  # the same event rewrites its own brief


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("expected_attendance", 1e308, "expected_attendance must be a number from 0 to 1e\\+08"),
        ("expected_attendance", float("inf"), "expected_attendance must be a number"),
        ("exit_widths_m", [4, float("inf")], "exit_widths_m must be widths above 0"),
        ("exit_widths_m", [-2], "exit_widths_m must be widths above 0"),
    ],
)
def test_absurd_event_numbers_are_refused(brief_store: Store, field, value, message):
    from test_brief import _concert

    from pipelines.events.brief import make_brief

    with pytest.raises(InputError, match=message):
        make_brief(brief_store, _concert(**{field: value}), write=False)
