"""``depthlab models``: the model families, presets and axes, read from `depthlab.models.catalog`
(data, no torch), so that the listing starts without importing torch."""

from __future__ import annotations

import dataclasses
import json

import click

from ..models.catalog import FAMILIES, PRESETS
from ..report.tables import format_table
from .app import cli


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def models(as_json):
    """List model families, presets and the axes they take."""
    if as_json:
        click.echo(
            json.dumps(
                {
                    "families": {
                        n: {
                            "parameters": {f.name: f.default for f in dataclasses.fields(fam.spec_cls)},
                            "datasets": list(fam.datasets),
                            "description": fam.description,
                        }
                        for n, fam in FAMILIES.items()
                    },
                    "presets": {
                        n: {"family": p.family, "values": p.values, "description": p.description}
                        for n, p in PRESETS.items()
                    },
                }
            )
        )
        return
    for name, fam in FAMILIES.items():
        fields = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(fam.spec_cls))
        click.echo(
            f"family {name}: {fam.description}\n  parameters: {fields}\n  datasets: {', '.join(fam.datasets)}"
        )
    click.echo("presets:")
    rows = [
        [name, p.family, ", ".join(f"{k}={v}" for k, v in p.values.items()), p.description]
        for name, p in PRESETS.items()
        if name not in FAMILIES
    ]
    for line in format_table(("preset", "family", "values", "description"), rows).splitlines():
        click.echo(f"  {line}".rstrip())
    click.echo(
        "axes (stages): act tanh|elu|relu; init normal:S|scaled:W2,B2|lecun-in|lecun-out|glorot|he|"
        "orthogonal|torch-default|delta-orthogonal[:W2,B2|:critical]|critical; norm none|bn; "
        "skip none|post|rezero|fixup; heads 1|3; width >0"
    )
