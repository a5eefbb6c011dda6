"""``repro upstream``: lock the pin, fetch the checkout, show its status, apply our patches."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from repro.core.cli_wiring import command, group, json_option
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_ENVIRONMENT, EXIT_UPSTREAM, ReproError, one_line
from repro.core.paths import UPSTREAM_ENV, resolve_upstream_dir, with_upstream
from repro.upstream.fetch import FetchRequest, fetch_upstream
from repro.upstream.git import as_git_url, checked_ref, last_error_line, run_git
from repro.upstream.patches import apply_series, read_series
from repro.upstream.pin import load_pin, write_pinned
from repro.upstream.state import UpstreamState, inspect_checkout

UPSTREAM_HELP = "Upstream PaddleClas checkout (default: $REPRO_UPSTREAM_DIR or ./.upstream/PaddleClas)."


def _say(line: str) -> None:
    click.echo(line, err=line.startswith("WARNING"))


def _print_warnings(state: UpstreamState) -> None:
    for warning in state.warnings():
        click.echo(f"WARNING: {warning}", err=True)


@group("upstream", exits={}, os_error_exit_code=EXIT_UPSTREAM)
def upstream() -> None:
    """Pin, fetch and check the upstream PaddleClas code the harness runs."""


@command("lock", parent=upstream, exits={EXIT_UPSTREAM: "the repository cannot be reached", EXIT_ENVIRONMENT: "git is missing"})
@click.option("--url", help="Repository to resolve the ref at (default: the pin's url).")
@click.option("--ref", help="Branch or tag to pin (default: the pin's ref).")
def lock(url: str | None, ref: str | None) -> None:
    """Resolve the ref to a commit and write it into patches/UPSTREAM.yaml."""
    pin = load_pin()
    url = url or pin.url
    ref = checked_ref(ref) if ref else checked_ref(pin.ref, pin.path)
    result = run_git(["ls-remote", "--end-of-options", as_git_url(url), f"refs/heads/{ref}", f"refs/tags/{ref}",
                      f"refs/tags/{ref}^{{}}"], check=False, what=f"git ls-remote {url}")
    if result.returncode != 0:
        raise ReproError(f"cannot reach {url}: {last_error_line(result.stderr)}; check the URL and network", EXIT_UPSTREAM)
    refs = dict(reversed(line.split("\t", 1)) for line in result.stdout.splitlines() if "\t" in line)
    commit = refs.get(f"refs/tags/{ref}^{{}}") or refs.get(f"refs/tags/{ref}") or refs.get(f"refs/heads/{ref}")
    if not commit:
        raise ReproError(f"{url} has no branch or tag {ref}: check --ref", EXIT_BAD_INPUT)
    if commit == pin.commit and ref == pin.ref and pin.commit_from == ref:
        click.echo(f"{ref} at {url} is still {commit}: pin unchanged")
        return
    path = write_pinned(commit, ref=ref if ref != pin.ref else None, commit_from=ref)
    click.echo(f"pinned {ref} = {commit} (resolved at {url}) in {path}")
    if pin.verified_against and commit != pin.verified_against:
        click.echo(f"WARNING: {commit[:8]} is not {pin.verified_against[:8]}, the commit our patches were verified"
                   " against: fetch it, run the smoke test, then update verified_against", err=True)


@command("fetch", parent=upstream, exits={EXIT_UPSTREAM: "cannot fetch, not the pinned commit, or a patch does not apply",
                                           EXIT_CONFLICT: "--dest holds something that is not a PaddleClas checkout",
                                           EXIT_ENVIRONMENT: "git is missing"})
@click.option("--url", help="GitHub, Gitee or a local path/mirror (default: the pin's url).")
@click.option("--ref", help="Branch or tag (default: the pin's ref).")
@click.option("--commit", help="Exact commit (default: the pin's); for --archive, the commit it was made from.")
@click.option("--archive", type=click.Path(path_type=Path), help="A PaddleClas .tar.gz or .zip instead of git.")
@click.option("--dest", type=click.Path(path_type=Path), help="Where to put the checkout (default: as --upstream).")
@click.option("--upstream", "upstream_dir", type=click.Path(path_type=Path), help=UPSTREAM_HELP + " An existing one is used in place.")
def fetch(url, ref, commit, archive, dest, upstream_dir) -> None:
    """Fetch the pinned upstream (sparse, shallow) and apply our patches; safe to run again."""
    if dest and upstream_dir and Path(dest).resolve() != Path(upstream_dir).resolve():
        raise ReproError("--dest and --upstream name different directories: give one of them", EXIT_BAD_INPUT)
    target = Path(dest).expanduser().resolve() if dest else resolve_upstream_dir(upstream_dir)
    # --upstream DIR and REPRO_UPSTREAM_DIR both name the user's checkout: an existing one is used
    # in place (`make smoke` runs `fetch` with no options, so the env var is its only way to say so).
    named = upstream_dir is not None or (dest is None and bool(os.environ.get(UPSTREAM_ENV)))
    in_place = named and target.exists()
    started = time.monotonic()
    request = FetchRequest(dest=target, url=url, ref=ref, commit=commit, archive=archive, in_place=in_place)
    state = fetch_upstream(request, say=_say)
    click.echo(f"{state.summary_line()} [{time.monotonic() - started:.1f} s]")
    _print_warnings(state)


@command("status", parent=upstream, exits={EXIT_UPSTREAM: "the checkout is missing or not as pinned"})
@click.option("--upstream", "upstream_dir", type=click.Path(path_type=Path), help=UPSTREAM_HELP)
@json_option("the checkout's record (as in a run's manifest)")
def status(upstream_dir, as_json: bool) -> None:
    """Show url, ref, pinned and checked-out commit, patches and local changes; exit 3 when not as pinned."""
    state = inspect_checkout(resolve_upstream_dir(upstream_dir))
    if as_json:
        click.echo(json.dumps(state.to_manifest(), indent=2))
    else:
        for label, value in (
            ("path", state.path),
            ("present", "yes" if state.present else "no"),
            ("source", f"archive {state.archive} (sha256 {state.archive_sha256})" if state.source == "archive"
             else state.source or "-"),
            ("url", state.url or "-"),
            ("ref", state.ref or "- (not known to be a ref's tip)"),
            ("upstream is", state.commit_is or "-"),
            ("pinned commit", state.pinned_commit or "- (run repro upstream lock)"),
            ("checked out", state.commit or "-"),
            ("matches pin", "yes" if state.matches_pin else "commit claimed, not verified" if state.commit_claimed
             else "no"),
            ("verified against", state.verified_against or "-"),
        ):
            click.echo(f"{label + ':':18}{value}")
        for check in state.patches:
            click.echo(f"{'patch:':18}{check.patch.name} {check.status.value} (sha256 {check.patch.sha256[:12]})")
        click.echo(f"{'local changes:':18}{', '.join(state.local_changes) or 'none'}")
        for problem in state.problems():
            click.echo(f"PROBLEM: {one_line(problem)}", err=True)
        _print_warnings(state)
    if state.problems():
        click.get_current_context().exit(EXIT_UPSTREAM)


@command("apply-patches", parent=upstream, exits={EXIT_UPSTREAM: "no checkout, or a patch does not apply"})
@click.option("--upstream", "upstream_dir", type=click.Path(path_type=Path), help=UPSTREAM_HELP)
def apply_patches(upstream_dir) -> None:
    """Apply patches/series to the checkout; already-applied patches are left alone."""
    tree = resolve_upstream_dir(upstream_dir)
    if not tree.is_dir():
        raise ReproError(f"no upstream checkout at {tree}: run `{with_upstream('repro upstream fetch', tree)}`",
                         EXIT_UPSTREAM)
    for patch, newly in apply_series(tree, read_series()):
        click.echo(f"patch {patch.name}: {'applied' if newly else 'already applied'}")
    click.echo(inspect_checkout(tree).summary_line())
