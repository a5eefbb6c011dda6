"""``repro eval RUN``: the number from the weights, not from the log."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import yaml

from repro.core.numeric_options import BoundedInt, process_limit
from repro.core.files import LIST_FILE_LIMIT, file_sha256, last_lines, read_bytes_bounded, read_text_bounded
from repro.core.cli_wiring import command, json_option
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_INTERRUPTED, EXIT_TRAINING_FAILED, EXIT_UPSTREAM, ReproError
from repro.launch.runner import show_last_lines
from repro.logs import patterns as P
from repro.run.rundir import (K_EVALUATIONS, K_TRUE_BEST, K_WRITTEN, Manifest, RunDir, open_run_dir, read_manifest,
                              run_id, utc_now)
from repro.logs.parse import parse_run
from repro.run.checkpoints import (CHECKPOINT_NAME, EPOCH_NAME, changed_file_message, changed_files, recorded_digest,
                                   saved_epoch)
from repro.launch.command import (HARNESS, REFERENCE, USER, LaunchCommand, Token, build_command,
                                  environment_changes, parse_gpus)
from repro.platform.profiles import load_profile
from repro.run.lock import RunLock, holder, is_active
from repro.run.processes import Launch

EVAL_ENTRY = "tools/eval.py"
TRAIN_ENTRY = "tools/train.py"
DEFAULT_CHECKPOINT = "true_best"
# Harness overrides that belong to training only: the eval gets its own output dir and weights.
TRAINING_ONLY = ("Global.output_dir", "Global.checkpoints", "Global.pretrained_model", "Global.seed", "Global.device")
EVAL_LOG = "eval.log"


# Upstream writes the best weights twice: best_model.pdparams (beside .pdopt and .pdstates) and
# best_model/model.pdparams (ppcls/utils/save_load.py). `repro runs prune` frees the first, so the
# second is what a pruned run still holds.
BEST_MODEL_COPY = Path("best_model") / "model"


def checkpoint_prefix(run: RunDir, name: str) -> Path:
    """``RUN/output/<name>`` (for best_model, upstream's ``best_model/model`` when only that copy is
    left), refused unless its weights (``.pdparams``) are there."""
    if not CHECKPOINT_NAME.match(name):
        raise ReproError(f"--checkpoint {name!r} is not a checkpoint name: use true_best, best_model, latest "
                         "or epoch_N (e.g. epoch_6)", EXIT_BAD_INPUT)
    prefix, has_copy = run.output / name, (run.output / BEST_MODEL_COPY).with_suffix(".pdparams").is_file()
    if prefix.with_suffix(".pdparams").is_file():
        return prefix
    if name == "best_model" and has_copy:
        return run.output / BEST_MODEL_COPY
    have = sorted(p.stem for p in run.output.glob("*.pdparams"))
    if has_copy and "best_model" not in have:
        have.append("best_model")
    fix = (f"evaluate one that is there: `repro eval {run.path} --checkpoint {have[-1]}`" if have else
           "this run's checkpoints were pruned (`repro runs prune`) or never written; nothing to evaluate")
    raise ReproError(f"{prefix}.pdparams does not exist (checkpoints here: {', '.join(have) or 'none'}); {fix}",
                     EXIT_BAD_INPUT)


def pruned_true_best(run: RunDir, manifest: dict[str, Any]) -> int | None:
    """The true best's epoch when ``true_best`` was pruned but upstream's ``best_model/model`` copy
    holds that very epoch (so evaluating it is evaluating the true best); None otherwise."""
    record = manifest.get(K_TRUE_BEST)
    if (run.output / "true_best.pdparams").is_file() or not isinstance(record, dict) or record.get("epoch") is None:
        return None
    if not (run.output / BEST_MODEL_COPY).with_suffix(".pdparams").is_file():
        return None
    epoch = upstream_best_epoch(run)
    return epoch if epoch == int(record["epoch"]) else None


def upstream_best_epoch(run: RunDir) -> int | None:
    """The epoch upstream's ``best_model`` holds, from its own rule: in the last launch, the last eval
    at or above that launch's running best (``>=``, from 0.0: a resume resets it)."""
    try:
        evals = parse_run(run.path).primary.evals
    except ReproError:
        return None
    if evals.empty or "top1" not in evals.columns:
        return None
    last = evals[evals["segment"] == evals["segment"].max()]
    best, epoch = 0.0, None
    for at, value in zip(last["epoch"], last["top1"]):
        if isinstance(value, float) and math.isfinite(value) and value >= best:
            best, epoch = value, int(at)
    return epoch


def checkpoint_epoch(run: RunDir, manifest: dict[str, Any], name: str) -> int | None:
    """The epoch whose weights ``name`` holds: the manifest's true best, else upstream's ``.pdstates``
    (for a best_model whose ``.pdstates`` was pruned, upstream's rule applied to the log)."""
    if name == "true_best":
        record = manifest.get(K_TRUE_BEST)
        if isinstance(record, dict) and record.get("epoch") is not None and record.get("checkpoint"):
            return int(record["epoch"])
    if (epoch := saved_epoch(run.output / name)) is not None:
        return epoch
    if name == "best_model":
        return upstream_best_epoch(run)
    match = EPOCH_NAME.match(name)
    return int(match.group(1)) if match else None


def verified_weights(run: RunDir, manifest: dict[str, Any], prefix: Path) -> tuple[str, bool]:
    """(sha256 of ``prefix``'s weights, whether training recorded that very digest); refuses weights
    (or the ``.pdstates`` that labels their epoch) whose bytes differ from what training wrote, so
    foreign weights are never scored under the run's name."""
    written = manifest.get(K_WRITTEN) if isinstance(manifest.get(K_WRITTEN), dict) else {}
    weights = prefix.with_suffix(".pdparams")
    digest = file_sha256(weights)
    # upstream's best_model/model.pdparams holds the very bytes of best_model.pdparams, whose digest training recorded
    recorded = recorded_digest(run.output / "best_model.pdparams" if prefix == run.output / BEST_MODEL_COPY
                               else weights, written)
    changed = ([weights] if recorded is not None and recorded != digest else []) + changed_files(
        [prefix.with_suffix(".pdstates")], written)
    if changed:
        other = "latest" if prefix.name != "latest" else "true_best"
        raise ReproError(changed_file_message(changed[0], f"put back the file training wrote, or evaluate another "
                                              f"checkpoint (`repro eval {run.path} --checkpoint {other}`)"),
                         EXIT_BAD_INPUT)
    if recorded is None:
        click.echo(f"repro: {weights} has no digest recorded by training (copied in, or saved before digests "
                   "were kept): this eval is recorded as unverified and `check-accuracy --require-eval` does not "
                   "count it", err=True)
    return digest, recorded is not None


def _pairs(tokens: list[dict[str, str]]) -> tuple[str, list[tuple[str, str]]]:
    """The run's ``-c`` argument and its ``-o`` values with their origin, from the manifest's tokens."""
    texts = [t["text"] for t in tokens]
    try:
        entry = texts.index(TRAIN_ENTRY)
    except ValueError:
        raise ReproError(f"the manifest's command has no {TRAIN_ENTRY}: this run was not started by `repro train`; "
                         "evaluate with upstream's tools/eval.py by hand", EXIT_BAD_INPUT) from None
    pairs = list(zip(tokens[entry + 1:], tokens[entry + 2:]))
    config = next((value["text"] for flag, value in reversed(pairs) if flag["text"] == "-c"), None)
    overrides = [(value["text"], value["source"]) for flag, value in pairs if flag["text"] == "-o"]
    if config is None:
        raise ReproError("the manifest's command has no -c config; it was not written by `repro train`", EXIT_BAD_INPUT)
    return config, overrides


def eval_command(run: RunDir, manifest: dict[str, Any], prefix: Path, out: Path, gpus: list[int] | None,
                 cpu_ranks: int | None):
    """The run's launch command turned into an eval of ``prefix`` writing into ``out`` (a LaunchCommand)."""
    recorded = manifest.get("command")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("tokens"), list):
        raise ReproError(f"{run.manifest} records no launch command; this run cannot be re-evaluated as it was "
                         "trained", EXIT_BAD_INPUT)
    run_command = LaunchCommand.from_manifest(recorded)
    config, overrides = _pairs(recorded["tokens"])
    device = next((v.split("=", 1)[1] for v, _ in overrides if v.startswith("Global.device=")), "gpu")
    gpus, cpu_ranks = eval_devices(manifest, gpus, cpu_ranks)
    after_launcher = [t.text for t in run_command.tokens[4:5]]  # the reference device flag follows the module
    flag = after_launcher[0].split("=", 1)[0] if after_launcher and "=" in after_launcher[0] else "--gpus"

    def kept(source: str) -> list[str]:
        return [v for v, s in overrides if s == source and v.split("=", 1)[0] not in TRAINING_ONLY]

    command = build_command(
        upstream_dir=run_command.cwd, entry=EVAL_ENTRY, config_arg=config, reference_overrides=kept(REFERENCE),
        device=device, run_dir=out, gpus=gpus, cpu_ranks=None if gpus is not None else cpu_ranks, devices_flag=flag,
        extra_overrides=kept(USER), harness_overrides=[*kept(HARNESS), f"Global.pretrained_model={prefix}"])
    # The reference trains; the eval entry is the harness's choice, and marked so.
    return replace(command, tokens=tuple(Token(t.text, HARNESS) if t.text == EVAL_ENTRY else t for t in command.tokens))


def eval_devices(manifest: dict[str, Any], gpus: list[int] | None,
                 cpu_ranks: int | None) -> tuple[list[int] | None, int | None]:
    """--gpus or --cpu-ranks, else the devices the run trained on."""
    if gpus is None and cpu_ranks is None:
        devices = manifest.get("devices") if isinstance(manifest.get("devices"), dict) else {}
        gpus, cpu_ranks = devices.get("gpus"), devices.get("cpu_ranks")
    if gpus is None and cpu_ranks is None:
        raise ReproError("the manifest records no devices; pass --gpus 0,1,2,3 or --cpu-ranks N", EXIT_BAD_INPUT)
    return gpus, cpu_ranks


def eval_environment(manifest: dict[str, Any], gpus: list[int] | None):
    """The platform profile's environment changes for these devices, as ``repro train`` makes them."""
    platform = manifest.get("platform") if isinstance(manifest.get("platform"), dict) else {}
    name = platform.get("name")
    if not name:
        raise ReproError("the manifest records no platform; this run cannot be re-evaluated as it was trained",
                         EXIT_BAD_INPUT)
    profile = load_profile(name)
    return environment_changes(profile.env, profile.visible_devices_var, gpus)


def eval_set_size(cwd: Path, config_file: Path) -> int | None:
    """Images in the eval set: the lines of ``DataLoader.Eval.dataset.cls_label_path`` (upstream's
    ``len(dataset)``), read from the run's resolved config; None if it cannot tell."""
    try:
        config = yaml.safe_load(read_text_bounded(config_file, what="run config"))
        label_path = cwd / str(config["DataLoader"]["Eval"]["dataset"]["cls_label_path"])  # unless absolute
        raw = read_bytes_bounded(label_path, LIST_FILE_LIMIT, what="eval list")
        return sum(1 for line in raw.splitlines() if line.strip())
    except (OSError, yaml.YAMLError, KeyError, TypeError, ReproError):
        return None


def read_result(out: Path) -> dict[str, float | None] | None:
    """top1, top5 and loss from the last ``[Eval][Epoch 0][Avg]`` line of upstream's ``eval.log`` (else rank 0's
    workerlog)."""
    for log in (out / "output" / EVAL_LOG, RunDir(out).workerlog(0)):
        try:
            lines = last_lines(log, 1000, 1 << 20).splitlines()
        except (OSError, ReproError):
            continue
        for read in map(P.read_line, reversed(lines)):
            if read.kind == P.EVAL_AVG_LINE:
                return {key: value if isinstance(value := read.values.get(name), float) else None
                        for key, name in (("top1", "top1"), ("top5", "top5"), ("loss", "CELoss"))}
    return None


def refuse_if_training(run: RunDir) -> None:
    if is_active(run.path):
        command = holder(run.lock)
        if command == "`repro eval`":
            raise ReproError(f"{run.path} is being evaluated ({command} holds {run.lock}); run this eval once that "
                             "one has ended", EXIT_CONFLICT)
        raise ReproError(f"{run.path} is in use ({command} or its ranks hold {run.lock}); evaluate it once "
                         f"that has ended (`repro watch {run.path}` follows a training)", EXIT_CONFLICT)


def evaluate(run_path: Path, checkpoint: str, gpus: list[int] | None, cpu_ranks: int | None,
             verbose: bool = False, echo=None) -> dict[str, Any]:
    """Run the eval, record it in the manifest, and return the record (raises if the eval failed). ``verbose``
    streams upstream's output through ``echo`` too; otherwise a failure shows the last lines of the failed log."""
    run = open_run_dir(run_path)
    refuse_if_training(run)
    if checkpoint == DEFAULT_CHECKPOINT and (epoch := pruned_true_best(run, read_manifest(run.manifest))) is not None:
        checkpoint = "best_model"
        click.echo(f"repro: true_best was pruned; evaluating {run.output / BEST_MODEL_COPY}.pdparams, upstream's "
                   f"copy of the same epoch {epoch}", err=True)
    prefix = checkpoint_prefix(run, checkpoint)
    lock = RunLock(run).acquire(lambda text: click.echo(f"repro: {text}", err=True))
    launch = None
    try:
        manifest = Manifest.load(run.manifest)
        digest, verified = verified_weights(run, manifest.data, prefix)
        out = _plan_eval_dir(run, checkpoint)
        command = eval_command(run, manifest.data, prefix, out, gpus, cpu_ranks)
        if not (command.cwd / EVAL_ENTRY).is_file():
            raise ReproError(f"no {EVAL_ENTRY} in {command.cwd}, the checkout this run trained with; restore it "
                             f"(`repro upstream fetch --upstream {command.cwd}`)", EXIT_UPSTREAM)
        env = eval_environment(manifest.data, eval_devices(manifest.data, gpus, cpu_ranks)[0])
        epoch = checkpoint_epoch(run, manifest.data, checkpoint)
        out.mkdir(parents=True)  # exclusive: never mixes two evaluations' logs
        record: dict[str, Any] = {
            "checkpoint": checkpoint, "epoch": epoch, "sha256": digest,
            "weights_verified": verified,  # the digest training recorded for this file: --require-eval counts it
            "started": utc_now(), "dir": str(out), "command": command.to_manifest(), "env": env.to_manifest(),
        }
        click.echo(f"+ {command.marked_line()}", err=True)
        launch = Launch(command.argv, command.cwd, env.apply(), RunDir(out), on_processes=lock.write,
                        echo=echo if verbose else (lambda text: None))
        launch.install_signal_handlers()
        launch.start()
        outcome = launch.wait()
        result = read_result(out) or dict.fromkeys(("top1", "top5", "loss"))
        config = manifest.data.get("config") if isinstance(manifest.data.get("config"), dict) else {}
        status = ("interrupted" if outcome.interrupted_by is not None
                  else "completed" if outcome.returncode == 0 and result["top1"] is not None else "failed")
        record.update(ended=utc_now(), exit_code=outcome.returncode, status=status, **result,
                      eval_set_size=eval_set_size(command.cwd, Path(config.get("file") or run.config)))
        manifest.append(K_EVALUATIONS, record)
    finally:
        if launch is not None:
            launch.restore_signal_handlers()
        lock.release()
    if record["status"] == "interrupted":
        raise ReproError(f"evaluation interrupted; its output is in {out}; run `repro eval {run.path}` again",
                         EXIT_INTERRUPTED)
    if record["status"] != "completed":
        if not verbose:
            rank0 = RunDir(out).workerlog(0)
            show_last_lines(rank0 if rank0.is_file() and rank0.stat().st_size else RunDir(out).console_log,
                            "tools/eval.py")
        raise ReproError(f"tools/eval.py exited {outcome.returncode} without an eval result; its output is in "
                         f"{out}/console.log and {out}/launcher/workerlog.0; fix the cause and rerun "
                         f"`repro eval {run.path} --checkpoint {checkpoint}`", EXIT_TRAINING_FAILED)
    return record


def _plan_eval_dir(run: RunDir, checkpoint: str) -> Path:
    """``RUN/eval/<checkpoint>-<UTC time>`` (``-2``, ``-3`` ... for a second eval in the same second)."""
    base = run.eval_dir / f"{checkpoint}-{run_id()}"
    return next(path for path in (base if n == 1 else base.with_name(f"{base.name}-{n}") for n in range(1, 10**6))
                if not path.exists())


def describe(record: dict[str, Any]) -> str:
    top1, top5 = (f"{v:.5f}" if isinstance(v := record.get(key), float) and math.isfinite(v) else "?"
                  for key in ("top1", "top5"))
    epoch = record.get("epoch")
    verified = "" if record.get("weights_verified") else ", unverified: no digest from training"
    return (f"eval {record['checkpoint']} (epoch {epoch if epoch is not None else '?'}, sha256 {record['sha256'][:12]}"
            f"{verified}): top1 {top1}, top5 {top5} on {record.get('eval_set_size') or '?'} images; {record['dir']}")


@command("eval", exits={EXIT_UPSTREAM: "the run's upstream checkout is gone", EXIT_CONFLICT: "the run is training",
                        EXIT_TRAINING_FAILED: "tools/eval.py failed"})
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--checkpoint", default=DEFAULT_CHECKPOINT, show_default=True,
              help="Which weights: true_best, best_model, latest or epoch_N.")
@click.option("--gpus", help="GPU ids for the eval (default: the run's devices).")
@click.option("--cpu-ranks", type=BoundedInt(1, process_limit()), help="CPU ranks for the eval (default: the run's).")
@click.option("-v", "--verbose", is_flag=True, help="Stream upstream's output here too (it always goes to the "
              "eval's console.log; to stderr with --json).")
@json_option("the evaluation's record (as in the manifest's evaluations)")
def eval_command_cli(run_path: Path, checkpoint: str, gpus: str | None, cpu_ranks: int | None, verbose: bool,
                     as_json: bool) -> None:
    """Evaluate a checkpoint of RUN with upstream's tools/eval.py, as the run was trained; the result
    goes into RUN/eval/ and the manifest, where check-accuracy compares it with the logged top-1."""
    if gpus is not None and cpu_ranks is not None:
        raise ReproError("--gpus and --cpu-ranks exclude each other; pass one", EXIT_BAD_INPUT)
    to_stderr = (lambda text: click.echo(text, nl=False, err=True)) if as_json else None  # stdout: the object alone
    record = evaluate(run_path, checkpoint, parse_gpus(gpus), cpu_ranks, verbose=verbose, echo=to_stderr)
    click.echo(json.dumps(record, indent=2, default=str) if as_json else describe(record))
