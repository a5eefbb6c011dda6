"""Values that reach a git argv are validated and never read as options; git cannot hang forever."""

from __future__ import annotations


import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.core.errors import EXIT_BAD_INPUT, EXIT_UPSTREAM, ReproError
from repro.upstream.git import as_git_url, checked_commit, checked_ref, run_git
from tests.upstream_fixtures import make_fake_upstream, write_harness_root

INJECTIONS = ["--upload-pack=touch {f}", "-c core.sshCommand=touch {f}", "--output={f}"]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    upstream = make_fake_upstream(tmp_path)
    root = write_harness_root(tmp_path / "harness", upstream.url, upstream.first)
    monkeypatch.setenv("REPRO_ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    return upstream


def invoke(*args: str):
    return CliRunner(mix_stderr=False).invoke(cli, list(args))


def one_line_error(result, code: int) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize("template", INJECTIONS)
def test_a_ref_that_is_an_option_runs_nothing(fake, tmp_path, template):
    marker = tmp_path / "PWNED"
    result = invoke("upstream", "fetch", "--dest", str(tmp_path / "pc"), f"--ref={template.format(f=marker)}")
    one_line_error(result, EXIT_BAD_INPUT)
    assert "not a valid branch or tag name" in result.stderr
    assert not marker.exists() and not (tmp_path / "pc").exists()


def test_a_ref_in_the_pin_with_no_commit_runs_nothing(fake, tmp_path):
    marker = tmp_path / "PWNED"
    pin = tmp_path / "harness" / "patches" / "UPSTREAM.yaml"
    pin.write_text(pin.read_text().replace("ref: release/2.6", f"ref: '--upload-pack=touch {marker}'")
                   .replace(f"commit: {fake.first}", "commit:"))
    result = invoke("upstream", "fetch", "--dest", str(tmp_path / "pc"))
    one_line_error(result, EXIT_BAD_INPUT)
    assert "UPSTREAM.yaml" in result.stderr and not marker.exists()
    lock = invoke("upstream", "lock")
    one_line_error(lock, EXIT_BAD_INPUT)
    assert not marker.exists()


def test_lock_refuses_an_option_as_url_and_as_ref(fake, tmp_path):
    marker = tmp_path / "PWNED"
    for args in (["--url", f"--upload-pack=touch {marker}"], ["--ref", f"--upload-pack=touch {marker}"]):
        one_line_error(invoke("upstream", "lock", *args), EXIT_BAD_INPUT)
    assert not marker.exists()


@pytest.mark.parametrize("url", [
    "--upload-pack=touch x", "ext::sh -c touch% x", "ssh://-oProxyCommand=touch%20x/repo", "ftp://host/x",
    "https://host/x y", "/no/such/dir", "user@-oProxyCommand=x:repo", "",
])
def test_bad_urls_are_refused(url):
    with pytest.raises(ReproError) as caught:
        as_git_url(url)
    assert caught.value.exit_code == EXIT_BAD_INPUT


@pytest.mark.parametrize("url", [
    "https://github.com/PaddlePaddle/PaddleClas.git", "http://mirror.local:8080/pc.git", "ssh://git@host/pc.git",
    "git://host/pc.git", "file:///srv/pc.git", "git@gitee.com:paddlepaddle/PaddleClas.git",
])
def test_good_urls_pass_unchanged(url):
    assert as_git_url(url) == url


def test_a_local_directory_becomes_a_file_url(tmp_path):
    assert as_git_url(str(tmp_path)) == tmp_path.resolve().as_uri()


@pytest.mark.parametrize("ref", ["release/2.6", "v2.6.0", "develop"])
def test_valid_refs(ref):
    assert checked_ref(ref) == ref


@pytest.mark.parametrize("ref", ["-x", "a b", "a..b", "a~1", "a:b", "", "héllo", "a\nb", "refs/../x"])
def test_invalid_refs(ref):
    with pytest.raises(ReproError):
        checked_ref(ref)


@pytest.mark.parametrize("commit", ["d178931f", "--upload-pack=x", "g" * 40, "a" * 41])
def test_commits_must_be_full_hex(commit):
    with pytest.raises(ReproError) as caught:
        checked_commit(commit)
    assert "40-hex" in caught.value.message


def test_fetch_refuses_a_bad_commit_before_running_git(fake, tmp_path):
    result = invoke("upstream", "fetch", "--dest", str(tmp_path / "pc"), "--commit", "--upload-pack=x")
    one_line_error(result, EXIT_BAD_INPUT)


def test_a_stalled_git_is_stopped_with_one_line(tmp_path, monkeypatch):
    """An ssh transport that never answers stands in for a dead network; its helper is killed too."""
    monkeypatch.setenv("GIT_SSH_COMMAND", f"sleep 30; touch {tmp_path / 'late'}")
    monkeypatch.setenv("REPRO_GIT_TIMEOUT", "1")
    with pytest.raises(ReproError) as caught:
        run_git(["ls-remote", "--end-of-options", "ssh://example.invalid/pc.git"], what="git ls-remote")
    assert caught.value.exit_code == EXIT_UPSTREAM
    assert "did not finish in 1 s" in caught.value.message and "REPRO_GIT_TIMEOUT" in caught.value.message


def test_git_gets_a_low_speed_limit(tmp_path, monkeypatch):
    seen = run_git(["config", "--get", "http.lowSpeedLimit"], check=False).stdout.strip()
    assert seen == "1000"
    assert run_git(["config", "--get", "http.lowSpeedTime"], check=False).stdout.strip() == "60"


def test_a_bad_timeout_setting_is_one_line(monkeypatch):
    monkeypatch.setenv("REPRO_GIT_TIMEOUT", "soon")
    with pytest.raises(ReproError) as caught:
        run_git(["--version"])
    assert "REPRO_GIT_TIMEOUT" in caught.value.message


def test_a_stalled_fetch_ends_with_one_line_and_leaves_nothing(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_SSH_COMMAND", "sleep 30; true")  # git appends host and command
    monkeypatch.setenv("REPRO_GIT_TIMEOUT", "1")
    result = invoke("upstream", "fetch", "--url", "ssh://git@example.invalid/PaddleClas.git")
    one_line_error(result, EXIT_UPSTREAM)
    assert "did not finish in 1 s" in result.stderr and "--archive FILE" in result.stderr
    assert not (tmp_path / ".upstream").exists()
