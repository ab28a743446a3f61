"""`vigie serve`: a read-only HTTP API over a store (FastAPI, served by uvicorn).

Endpoints (all GET; the OpenAPI page is ``/docs``, its schema ``/openapi.json``):

* ``/zones`` (GeoJSON; with ``period``, each zone's indicators as in `vigie export`);
* ``/presence?zone=&from=&to=`` (slot by slot: present, reference, ratio, residents, visitors,
  visitor share, present against the resident population);
* ``/signals?period=`` (the period's ranked weak signals);
* ``/briefs`` and ``/briefs/{event_id}`` (an event's hour-by-hour staffing, lamps to repair);
* ``/indicators/{zone}?period=`` (a zone's indicators of a period and its signals; ``who``:
  visitor share and the peak of people present against the resident population);
* ``/origins?zone=&period=`` (visitors' origins per zone and ISO week; origins below k merged
  into ``other`` with complementary suppression).

Every answer is published as the reports are (:mod:`pipelines.reports.publish`: counts below the
study's k read ``"<k"``, figures that would rebuild them ``"c"``; GeoJSON properties carry them
as null with a ``suppressed`` property, as the exported files do). No answer holds an incident
id. Errors are JSON (``{"error": ..., "status": ...}``) with a 4xx code: 400 for a bad value or
a period outside the data, 401 without the token, 404 for an unknown zone, brief or route, 422
for a missing or mistyped parameter. When the environment variable named by ``token_env``
(default ``VIGIE_API_TOKEN``) is set, every data endpoint needs ``Authorization: Bearer
<token>``. The server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.errors import InputError, StoreError, VigieError
from features.store import Store
from pipelines.api.data import NotFound, StoreView
from pipelines.api.streaming import json_document, ndjson

log = logging.getLogger(__name__)

TOKEN_ENV = "VIGIE_API_TOKEN"
JSON = "application/json"
NDJSON = "application/x-ndjson"
GEOJSON = "application/geo+json"


class ApiError(Exception):
    """An answer refused with a status and a message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        resp = _error(exc.status, exc.message)
        resp.headers.update(exc.headers or {})
        return resp

    @app.exception_handler(VigieError)
    async def vigie_error(_: Request, exc: VigieError) -> JSONResponse:
        status = 404 if isinstance(exc, NotFound) else 400 if isinstance(exc, InputError) else 409
        return _error(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
            for e in exc.errors()
        ]
        return _error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = "no such endpoint; see /docs" if exc.status_code == 404 else str(exc.detail)
        return _error(exc.status_code, message)


def _auth(token: str | None) -> Callable[..., None]:
    bearer = HTTPBearer(auto_error=False, description=f"the token in ${TOKEN_ENV}, when set")

    def check(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is None:
            return
        given = cred.credentials if cred is not None else ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})

    return check


def _stream(chunks: Iterator[bytes], media_type: str) -> StreamingResponse:
    return StreamingResponse(chunks, media_type=media_type)


def create_app(store: str | Path | Store, *, token: str | None = None) -> FastAPI:
    """The API over ``store`` (read-only); ``token`` (None: open) guards every data endpoint."""
    view = StoreView(store)
    view.state()  # a store without zones or cube fails now, not on the first request
    app = FastAPI(
        title="vigie",
        summary="Read-only API over a vigie store: zones, presence, signals, briefs, indicators.",
        description=__doc__,
        dependencies=[Depends(_auth(token))],
    )
    _install_errors(app)
    _routes(app, view)
    return app


def _routes(app: FastAPI, view: StoreView) -> None:
    period_q = Query(None, description="ISO week (2026-W46) or local dates (2026-11-01_2026-11-07)")

    @app.get("/zones", summary="The zones as GeoJSON (EPSG:4326)", response_class=StreamingResponse)
    def zones(period: str | None = period_q) -> StreamingResponse:
        per = view.period(period) if period else None
        head = {"type": "FeatureCollection", "k": view.k, "period": per.label if per else None}
        return _stream(json_document(head, "features", view.zone_features(per)), GEOJSON)

    @app.get(
        "/presence", summary="A zone's presence slot by slot", response_class=StreamingResponse
    )
    def presence(
        zone: str = Query(..., description="zone id (see /zones)"),
        date_from: str | None = Query(None, alias="from", description="local date or ISO time"),
        date_to: str | None = Query(
            None, alias="to", description="local date (included) or ISO time"
        ),
        fmt: str = Query("json", alias="format", pattern="^(json|ndjson)$"),
    ) -> StreamingResponse:
        view.check_zone(zone)
        start, end = view.window(date_from, date_to)
        head = {"zone": zone, "from": start.isoformat(), "to": end.isoformat(), "k": view.k}
        rows = view.presence_records(zone, start, end)
        if fmt == "ndjson":
            return _stream(ndjson(head, rows), NDJSON)
        return _stream(json_document(head, "slots", rows), JSON)

    @app.get("/signals", summary="The weak signals of a period", response_class=StreamingResponse)
    def signals(period: str | None = period_q) -> StreamingResponse:
        head, rows = view.signals(view.period(period))
        return _stream(json_document(head, "signals", rows), JSON)

    @app.get("/briefs", summary="The events with a brief")
    def briefs() -> dict[str, Any]:
        return {"briefs": view.brief_ids()}

    @app.get(
        "/briefs/{event_id}", summary="An event's brief: staffing hour by hour, lamps to repair"
    )
    def brief(event_id: str = PathParam(..., max_length=128)) -> dict[str, Any]:
        return view.brief(event_id)

    @app.get("/origins", summary="Visitors' origins per zone and ISO week (below k: 'other')")
    def origins(
        zone: str | None = Query(None, description="zone id (default: every zone)"),
        period: str | None = period_q,
    ) -> dict[str, Any]:
        if zone is not None:
            view.check_zone(zone)
        return view.origins(zone, view.period(period))

    @app.get("/indicators/{zone}", summary="A zone's indicators of a period")
    def indicators(zone: str, period: str | None = period_q) -> dict[str, Any]:
        view.check_zone(zone)
        return view.indicators(zone, view.period(period))


def serve(
    store: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token_env: str = TOKEN_ENV,
    log_level: str = "info",
) -> None:
    """Run the API with uvicorn until interrupted.

    Raises
    ------
    StoreError
        When ``store`` is not a store with zones and a cube.
    """
    import uvicorn

    st = Store(store)
    st.study()  # a clear message for a folder that is not a store
    token = os.environ.get(token_env) or None
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving %s on %s without a token: anyone who can reach this address can read it; "
            "set $%s.",
            st.root,
            host,
            token_env,
        )
    try:
        app = create_app(st, token=token)
    except FileNotFoundError as exc:
        raise StoreError(f"{st.root}: {exc}") from None
    print(
        f"vigie serve: {st.root} on http://{host}:{port} (OpenAPI page: /docs); "
        + ("bearer token required." if token else f"no token (${token_env} unset)."),
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
