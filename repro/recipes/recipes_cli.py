"""``repro recipes``: every recipe the harness can run, and where each target comes from (a target is only
as good as its provenance: README row, hardware and SDK, and what the README contradicts itself on)."""

from __future__ import annotations

import json
from typing import Any

import click
import yaml

from repro.core.errors import EXIT_BAD_INPUT
from repro.core.cli_wiring import aligned_columns, command, group, json_option
from repro.recipes.catalog import Recipe, available_recipes, load_recipe, target_status


def summary(recipe: Recipe) -> dict[str, Any]:
    """One listing row: what it trains, on how many GPUs, and what (if anything) proves it."""
    info = recipe.data.get("target") or {}
    return {
        "name": recipe.name,
        "model": recipe.arch,
        "gpus": recipe.reference_gpus,
        "target": None if recipe.target is None else recipe.target.value,
        "metric": info.get("metric", "top1"),
        "target_status": target_status(recipe),
        "hardware": info.get("hardware"),
        "config": recipe.config,
    }


def _format_target(row: dict[str, Any]) -> str:
    return "-" if row["target"] is None else f"{row['target']:.4f}"


@group("recipes", exits={}, invoke_without_command=True)
@json_option("the list (one object per recipe, in an array)")
@click.pass_context
def recipes(ctx: click.Context, as_json: bool) -> None:
    """List the recipes: name, model, GPUs, target and the target's status."""
    if ctx.invoked_subcommand is not None:
        return
    rows = [summary(load_recipe(name)) for name in available_recipes()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    headers = ("recipe", "model", "GPUs", "target", "status")
    table = [(r["name"], r["model"], str(r["gpus"]), _format_target(r), r["target_status"]) for r in rows]
    for line in aligned_columns([headers, *table]):
        click.echo(line)
    click.echo(f"{len(rows)} recipes; `repro recipes show NAME` for one with its provenance")


@command("show", parent=recipes, exits={EXIT_BAD_INPUT: "no such recipe"})
@click.argument("name")
@json_option("the recipe's data")
def show(name: str, as_json: bool) -> None:
    """Print one recipe whole: the README's command, the target with where it came from, the traps."""
    recipe = load_recipe(name)  # an unknown name is one line listing the known ones
    data = dict(recipe.data)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    row = summary(recipe)
    click.echo(f"{recipe.name}: {recipe.arch}, {recipe.reference_gpus} GPUs, target {_format_target(row)} "
               f"({row['target_status']})")
    if recipe.launch is not None:
        click.echo("reference command (README):")
        for key, value in recipe.launch.env.items():
            click.echo(f"  export {key}={value}")
        click.echo(f"  {recipe.launch.command}")
    for item in recipe.harness_overrides:
        click.echo(f"harness override: -o {item.option}  ({item.why})")
    click.echo("---")
    click.echo(yaml.safe_dump(data, sort_keys=False, width=110, allow_unicode=True).rstrip())
