"""`vigie synth`: write a synthetic city (raw files, sources.yaml, truth.json)."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import user_errors


@user_errors
def synth(
    scale: str = typer.Option(
        "tiny",
        "--scale",
        help="tiny (30 zones, 8 weeks), city (300 zones, "
        "2 years), metropolis (1 000 zones, 2 years) or region (5 000 zones, 2 years).",
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder to write the raw files, sources.yaml and truth.json into."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Random seed; the same seed gives byte-identical files."
    ),
    realism: str = typer.Option(
        "default",
        "--realism",
        help="on: incidents from a process the models do not assume (zone effects, day shocks, "
        "trend and season, presence as a biased proxy, withheld recurring games, inelastic "
        "crowds, sparse categories); off: the models' own process; default: on for city and "
        "metropolis, off for tiny.",
    ),
) -> None:
    """Write a synthetic city whose truth is known (the demo, test bed and benchmark)."""
    from features.errors import InputError
    from features.synth import generate

    choice = {"on": True, "off": False, "default": None}
    if realism not in choice:
        raise InputError(f"--realism must be on, off or default, got {realism!r}.")
    res = generate(scale, out, seed=seed, realism=choice[realism])
    typer.echo(
        f"synthetic {res.scale} city (seed {res.seed}) written to {res.out} in {res.seconds:.1f} s: "
        + ", ".join(f"{k} {v:,}" for k, v in res.rows.items())
    )
    typer.echo(f"study: {res.sources_yaml}\ntruth: {res.truth_json}")
