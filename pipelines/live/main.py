"""The entry of `vigie live` (called by :mod:`pipelines.cli.live`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from features.config import load_study
from features.errors import ConfigError
from features.store import Store
from pipelines.live.run import LiveRunner, watch
from pipelines.live.settings import LiveSettings


def live_main(
    store: Path,
    *,
    inbox: Path | None,
    sources: Path | None,
    once: bool,
    replay: tuple[str, str] | None,
    speed: float,
    drill: Path | None,
    reports: Path,
    settings: Path | None,
    overrides: dict[str, Any],
) -> str:
    """Run `vigie live` as the options say; a one-line summary."""
    cfg = LiveSettings.load(settings, **overrides)
    st = Store(store)
    st.study()  # a clear error when the store was never ingested
    if replay is not None:
        from pipelines.live.replay import replay as run_replay

        out = drill or store.with_name(store.name + ".drill")
        runner = run_replay(
            st,
            start=replay[0],
            end=replay[1],
            drill=out,
            reports=reports,
            settings=cfg,
            speed=speed,
        )
        n = (
            sum(1 for _ in (runner.store.root / "live" / "alerts.jsonl").open())
            if (runner.store.root / "live" / "alerts.jsonl").exists()
            else 0
        )
        return f"replayed {replay[0]} .. {replay[1]} into {out}: {n} alert(s); page {reports / 'live' / 'index.html'}"
    assert inbox is not None and sources is not None
    study = load_study(sources)
    if study.presence is None:
        raise ConfigError(f"{sources}: the study has no presence source to watch.")
    runner = LiveRunner(st, inbox, study.presence, cfg, reports)
    if once:
        files, waiting = runner.ready()
        if waiting:
            import time

            time.sleep(cfg.settle_seconds)
            files, waiting = runner.ready()
        done = runner.process(files=files)
        return (
            f"{len(done['files'])} file(s) processed, {len(done['alerts'])} alert(s), "
            f"{done['delivered']} delivered, {waiting} still being written"
        )
    watch(runner)
    return "stopped"
