"""The study description (`sources.yaml`), validated with pydantic.

A study maps a city's own files onto vigie's canonical sources. Example::

    area: {name: Chicago, timezone: America/Chicago, grain: 1h}
    suppression_k: 10
    zones: {path: community_areas.geojson, columns: {zone_id: area_numbe, name: community}}
    incidents:
      path: crimes_*.csv
      columns: {incident_id: ID, occurred_at: Date, latitude: Latitude, longitude: Longitude,
                category: Primary Type}
      time_format: "%m/%d/%Y %I:%M:%S %p"

Relative paths are relative to the sources.yaml.
"""

from __future__ import annotations

import datetime as dt
import difflib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.errors import ConfigError

#: the longest area name: it heads every report
MAX_NAME = 200

SOURCE_NAMES = (
    "zones",
    "presence",
    "presence_origin",
    "incidents",
    "lamps",
    "lighting_faults",
    "stops",
    "ridership",
    "events",
    "weather",
)


class Area(BaseModel):
    """The study area: its name, its time zone and the grain of the cube."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="study", min_length=1, max_length=MAX_NAME)
    timezone: str = "UTC"
    grain: Literal["1h", "1d"] = "1h"
    h3_resolution: int = Field(
        default=8, ge=0, le=15, description="H3 resolution when there is no zones file"
    )
    country: str | None = Field(
        default=None,
        description="ISO country code for public holidays; inferred from the time zone if unset",
    )
    subdivision: str | None = Field(
        default=None, description="holidays subdivision, e.g. 'IL' or '75'"
    )
    school_zone: str | None = Field(
        default=None, description="French school-holiday zone A, B or C (vacances-scolaires-france)"
    )
    tiles: str | None = Field(
        default=None,
        max_length=500,
        description="base map of the reports' maps, e.g. OpenStreetMap (fetched from the network "
        "when the report is opened); none by default",
    )

    @field_validator("timezone")
    @classmethod
    def _known_tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {v!r} (expected an IANA name such as Europe/Paris)"
            ) from exc
        return v


class SourceSpec(BaseModel):
    """Where one canonical source lives and how its columns map onto canonical names."""

    model_config = ConfigDict(extra="forbid")

    path: str | list[str]
    columns: dict[str, str] = Field(
        default_factory=dict, description="canonical name -> file's column"
    )
    format: Literal["csv", "parquet", "jsonl", "geojson", "gpkg", "gtfs", "txt"] | None = None
    time_format: str | None = None
    slot_minutes: int | None = Field(None, ge=15, le=1440)
    crs: str | None = Field(None, description="CRS of x/y columns, e.g. EPSG:2154")
    delimiter: str | None = None
    encoding: str | None = None
    layer: str | None = None
    timezone: str | None = Field(None, description="overrides the area's time zone for naive times")
    constants: dict[str, Any] = Field(
        default_factory=dict, description="canonical columns given one value for the whole file"
    )
    units: dict[str, Literal["fahrenheit", "inch"]] = Field(
        default_factory=dict,
        description="unit of a canonical column as the file gives it, converted on reading: "
        "temperature_c in fahrenheit, precipitation_mm in inch",
    )

    def paths(self, base: Path) -> list[str]:
        """The path patterns, made absolute against the sources.yaml's folder."""
        items = [self.path] if isinstance(self.path, str) else list(self.path)
        return [str(p if Path(p).is_absolute() else (base / p)) for p in items]


class Study(BaseModel):
    """A whole sources.yaml."""

    model_config = ConfigDict(extra="forbid")

    area: Area = Field(default_factory=Area)
    suppression_k: int = Field(10, ge=1)
    zones: SourceSpec | None = None
    presence: SourceSpec | None = None
    presence_origin: SourceSpec | None = None
    incidents: SourceSpec | None = None
    lamps: SourceSpec | None = None
    lighting_faults: SourceSpec | None = None
    stops: SourceSpec | None = None
    ridership: SourceSpec | None = None
    events: SourceSpec | None = None
    weather: SourceSpec | None = None

    base_dir: Path = Field(Path("."), exclude=True)

    def sources(self) -> dict[str, SourceSpec]:
        """The sources present in this study, in canonical order."""
        return {n: getattr(self, n) for n in SOURCE_NAMES if getattr(self, n) is not None}


def closest(name: str, options: list[str] | tuple[str, ...]) -> str | None:
    """The option closest to ``name`` (difflib, similarity at least 0.5), or None."""
    hit = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return hit[0] if hit else None


#: the largest YAML file read (a sources.yaml or an event file is a few kilobytes)
MAX_YAML_BYTES = 1 << 20
#: the most values a YAML file may hold once its aliases are expanded (an alias bomb holds
#: billions: refused before anything is built)
MAX_YAML_NODES = 100_000


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content, read with PyYAML's safe loader only (plain data: no Python object,
    no code), within :data:`MAX_YAML_BYTES` and :data:`MAX_YAML_NODES`.

    The nodes are counted with every alias expanded, on the parsed graph and before anything
    is built, so an alias bomb ("billion laughs") is refused at once.

    Raises
    ------
    ConfigError
        A missing, huge, non-UTF-8 or invalid file, or one whose aliases expand too far;
        the message names the file (and the line for a syntax error).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        raise ConfigError(f"{path}: no such file.", file=str(path)) from None
    if size > MAX_YAML_BYTES:
        raise ConfigError(
            f"{path}: {size:,} bytes, more than the {MAX_YAML_BYTES:,} a YAML file of vigie "
            "may hold; refused.",
            file=str(path),
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8.", file=str(path)) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count_nodes(node, path)
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply; refused.", file=str(path)) from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError(
            f"{path}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}.",
            file=str(path),
        ) from None
    finally:
        loader.dispose()


def _count_nodes(root: yaml.Node, path: Path) -> None:
    """Refuse a YAML graph that holds more than :data:`MAX_YAML_NODES` values once its aliases
    are expanded, or refers to itself. Each node is sized once (memoised), so a bomb of nested
    aliases costs as many steps as it has distinct nodes."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise ConfigError(f"{path}: a YAML alias refers to itself; refused.", file=str(path))
        open_.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(n) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        open_.discard(key)
        sizes[key] = total
        if total > MAX_YAML_NODES:
            raise ConfigError(
                f"{path}: more than {MAX_YAML_NODES:,} values once its aliases are expanded "
                "(an alias bomb?); refused.",
                file=str(path),
            )
        return total

    size(root)


def load_study(path: str | Path) -> Study:
    """Read and validate a sources.yaml.

    Raises
    ------
    ConfigError
        When the file is missing, is not YAML, names an unknown source or has a wrong field;
        the message names the file and the field.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such sources file.", file=str(path))
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: the sources file is empty.", file=str(path))
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sources at the top level, got {type(raw).__name__}.",
            file=str(path),
        )
    _check_top_level(raw, path)
    try:
        study = Study.model_validate(raw)
    except ValidationError as exc:
        lines = [_explain(err) for err in exc.errors()]
        raise ConfigError(
            f"{path}: invalid sources file: " + "; ".join(lines) + ".", file=str(path)
        ) from None
    _check_constants(study, path)
    study.base_dir = path.resolve().parent
    return study


#: the top-level keys of a sources.yaml that are settings, not sources
SETTINGS = ("area", "suppression_k")


def _check_top_level(raw: dict[Any, Any], path: Path) -> None:
    """Every top-level key is a source or a setting; a typo gets the closest valid key."""
    known = list(SOURCE_NAMES) + list(SETTINGS)
    for key in raw:
        if key in known:
            continue
        hint = closest(str(key), known)
        kind = "setting" if hint in SETTINGS else "source"
        raise ConfigError(
            f"{path}: unknown {kind} {key!r}"
            + (f" (did you mean {hint!r}?)" if hint else "")
            + f"; the settings are {', '.join(SETTINGS)} and the sources "
            + f"{', '.join(SOURCE_NAMES)}.",
            file=str(path),
            column=str(key),
        )


def _explain(err: Any) -> str:
    """One pydantic error in words: where, what, and for an unknown key the closest valid one."""
    loc = [str(p) for p in err["loc"]]
    where = ".".join(loc)
    if err.get("type") != "extra_forbidden":
        return f"{where}: {err['msg']}"
    model: Any = Study
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        if field is None:
            break
        model = next((a for a in getattr(field.annotation, "__args__", ()) if a), field.annotation)
    fields = sorted(getattr(model, "model_fields", {}))
    fields = [f for f in fields if f != "base_dir"]
    hint = closest(loc[-1], fields)
    return (
        f"{where}: unknown key {loc[-1]!r}"
        + (f" (did you mean {hint!r}?)" if hint else "")
        + (f"; valid keys here are {', '.join(fields)}" if fields else "")
    )


def _check_constants(study: Study, path: Path) -> None:
    """Every ``constants:`` key is a canonical column of its source, given one plain value."""
    from features import schemas

    for source, spec in study.sources().items():
        canon = list(schemas.columns(source))
        for key, value in spec.constants.items():
            if key not in canon or key == "geometry":
                hint = closest(str(key), canon)
                raise ConfigError(
                    f"{path}: {source}.constants names {key!r}, which is not a canonical column "
                    f"of {source}"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                    + f"; canonical columns are {', '.join(c for c in canon if c != 'geometry')}.",
                    file=str(path),
                    column=str(key),
                )
            if value is not None and not isinstance(value, (str, int, float, bool, dt.date)):
                raise ConfigError(
                    f"{path}: {source}.constants.{key} must be one value (text or number), "
                    f"got a {type(value).__name__}.",
                    file=str(path),
                    column=str(key),
                )


def default_country(timezone: str) -> str | None:
    """Country code for public holidays from an IANA time zone (best effort)."""
    table = {
        "Europe/Paris": "FR",
        "Europe/London": "GB",
        "Europe/Berlin": "DE",
        "Europe/Madrid": "ES",
        "Europe/Rome": "IT",
        "Europe/Brussels": "BE",
        "Europe/Amsterdam": "NL",
        "Europe/Zurich": "CH",
        "Europe/Lisbon": "PT",
        "America/Chicago": "US",
        "America/New_York": "US",
        "America/Los_Angeles": "US",
        "America/Denver": "US",
        "America/Sao_Paulo": "BR",
        "Australia/Sydney": "AU",
        "Australia/Melbourne": "AU",
        "Pacific/Auckland": "NZ",
        "America/Santiago": "CL",
        "Africa/Johannesburg": "ZA",
    }
    return table.get(timezone)
