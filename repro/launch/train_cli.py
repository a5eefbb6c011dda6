"""``repro train``: the command line only, checked before anything is loaded. Options also come from the
environment (``REPRO_TRAIN_GPUS`` ...): how ``make train GPUS=...`` reaches it without a shell string."""

from __future__ import annotations

from pathlib import Path

import click

from repro.core.numeric_options import BoundedFloat, BoundedInt, process_limit
from repro.core.cli_wiring import command, json_option
from repro.core.paths import DEFAULT_LOGS
from repro.core.errors import (EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_ENVIRONMENT, EXIT_INTERNAL, EXIT_OK,
                               EXIT_PREFLIGHT, EXIT_TRAINING_FAILED, EXIT_UPSTREAM, ReproError)
from repro.recipes.catalog import DEFAULT_RECIPE
from repro.run.checkpoints import DEFAULT_KEEP
from repro.launch.command import parse_gpus
from repro.launch.nodes import DEFAULT_STALL_TIMEOUT, MAX_NODES, check_node_options
from repro.launch.upstream_config import refuse_harness_owned
from repro.launch.start import start_run
from repro.launch.resume import resume_run


def split_overrides(values: tuple[str, ...]) -> list[str]:
    """``-o`` values (click splits make's OVERRIDES="a=1 b=2" on spaces); a key the harness owns is refused
    before anything is loaded."""
    out: list[str] = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        if "=" not in value:
            raise ReproError(f"override {value!r} is not KEY=VALUE: write e.g. -o Global.epochs=120", EXIT_BAD_INPUT)
        refuse_harness_owned(value.split("=", 1)[0])
        out.append(value)
    return out


def check_master(master: str | None, nnodes: int | None) -> None:
    if (nnodes or 1) > 1 and not master:
        raise ReproError("--nnodes N > 1 needs --master HOST:PORT (the same on every node)", EXIT_BAD_INPUT)
    if master:
        host, _, port = master.rpartition(":")
        valid_host = host and not host.startswith("-") and host.isprintable() and not any(c.isspace() for c in host)
        if not valid_host or not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ReproError(f"--master {master!r} is not HOST:PORT with a port in 1-65535, e.g. --master 10.0.0.1:8090", EXIT_BAD_INPUT)


# What --resume does not take from the manifest; every other option is refused. Only command-line values
# are: ``make train`` exports REPRO_TRAIN_PLATFORM (and GPUS, OVERRIDES) whatever the user meant, so
# values from the environment (or defaults) are not "given".
RESUME_TAKES = ("keep_checkpoints", "resume_dir", "dry_run", "as_json", "verbose")


@command("train", exits={
    EXIT_OK: "training completed (judge it: repro check-accuracy RUN); with --dry-run, the plan printed",
    EXIT_UPSTREAM: None, EXIT_PREFLIGHT: None, EXIT_CONFLICT: "the run directory exists or is in use",
    EXIT_TRAINING_FAILED: None, EXIT_ENVIRONMENT: "unknown platform, or a package or tool is missing",
    EXIT_INTERNAL: None})
@click.option("--gpus", help="GPU ids, e.g. 0,1,2,3 (GPU platforms; default: the recipe's 4 GPUs).")
@click.option("--cpu-ranks", type=BoundedInt(1, process_limit()), help="Number of CPU ranks (cpu platform; default 2).")
@click.option("--platform", help="Platform profile (environments/<name>); default: the one the venv was built for.")
@click.option("--recipe", default=DEFAULT_RECIPE, show_default=True, help="Recipe (repro/recipes/<name>.yaml).")
@click.option("-o", "--override", "override", multiple=True, metavar="KEY=VALUE",
              help="Upstream config override, checked against the config (repeatable).")
@click.option("--run-dir", type=click.Path(path_type=Path), help="Run directory (default: LOGS_DIR/<UTC time>).")
@click.option("--logs-dir", type=click.Path(path_type=Path), default=DEFAULT_LOGS, show_default=True)
@click.option("--nnodes", type=BoundedInt(1, MAX_NODES), help="Number of nodes (passed to paddle.distributed.launch).")
@click.option("--master", metavar="HOST:PORT", help="Rendezvous of a multi-node run (same on every node; node 0's address).")
@click.option("--node-rank", type=BoundedInt(0, MAX_NODES - 1), help="This node's rank, 0..N-1 (required with --nnodes N > 1; "
              "node 0 serves --master and holds global rank 0, its logs and checkpoints).")
@click.option("--stall-timeout", type=BoundedFloat(1, 7 * 86400), default=DEFAULT_STALL_TIMEOUT, show_default=True,
              help="Several nodes: stop when no log line came for this many seconds (a rank stuck on a lost node).")
@click.option("--seed", type=BoundedInt(0, 2**32 - 1), help="Set Global.seed (upstream's config sets none).")
@click.option("--scale-lr", is_flag=True, help="Scale the learning rate linearly with the device count.")
@click.option("--keep-checkpoints", type=BoundedInt(1, 10_000), default=DEFAULT_KEEP, show_default=True,
              help="How many epoch_N checkpoints to keep (latest, best_model and true_best are always kept).")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), metavar="RUN_DIR",
              help="Continue RUN_DIR from its newest complete checkpoint.")
@click.option("--upstream", type=click.Path(path_type=Path), help="Upstream PaddleClas checkout.")
@click.option("--dry-run", is_flag=True, help="Print the command, directory and environment; start nothing.")
@json_option("with --dry-run, the plan (run_dir, command, env, notes)")
@click.option("--smoke", is_flag=True, help="Use the recipe's smoke variant (small crops, few epochs).")
@click.option("--skip-preflight", is_flag=True, help="Skip the pre-flight checks (tests, experts); recorded.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Read the dataset from this ImageNet-layout root instead of the checkout's dataset/ILSVRC2012 "
              "(what the smoke does); a harness override, not a deviation.")
@click.option("--visualdl", is_flag=True, help="Also write upstream's VisualDL logs (Global.use_visualdl=True) into "
              "RUN/output; a logging option, not a deviation. View: visualdl --logdir RUN/output.")
@click.option("-v", "--verbose", is_flag=True, help="Stream upstream's output to the terminal (default: one progress "
              "line; it always goes to RUN/console.log).")
def train(**options) -> None:
    """Train the recipe with upstream's tools/train.py, exactly as the reference runs it.

    The terminal shows one progress line (epoch, iteration, loss, top-1, ips, ETA), alarms and, on
    failure, the last lines of the log that failed; upstream's own output goes to RUN/console.log
    and the rank logs in RUN/launcher/ (-v streams it here too).
    """
    ctx = click.get_current_context()
    if options["as_json"] and not options["dry_run"]:
        raise ReproError("--json applies to --dry-run (a run's verdict: repro check-accuracy RUN --json); add --dry-run",
                         EXIT_BAD_INPUT)
    resume_dir = options.pop("resume_dir")
    if resume_dir is not None:
        changed = [param.opts[0] for param in ctx.command.params if param.name not in RESUME_TAKES
                   and ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE]
        if changed:
            raise ReproError(f"--resume reuses the run's own command; drop {', '.join(changed)} (start a new run to "
                             "change them)", EXIT_BAD_INPUT)
        keep_given = ctx.get_parameter_source("keep_checkpoints") not in (None, click.core.ParameterSource.DEFAULT)
        resume_run(resume_dir, options["keep_checkpoints"] if keep_given else None, options["dry_run"],
                   options["as_json"], verbose=options["verbose"])
        return

    gpus = parse_gpus(options.pop("gpus"))
    check_master(options["master"], options["nnodes"])
    check_node_options(options["nnodes"], options["node_rank"])
    if options["smoke"] and options["scale_lr"]:
        raise ReproError("--scale-lr does not apply to --smoke (the smoke variant sets its own learning rate)", EXIT_BAD_INPUT)
    start_run(gpus=gpus, user_overrides=split_overrides(options.pop("override")), recipe_name=options.pop("recipe"),
              keep=options.pop("keep_checkpoints"), **options)
