"""Every DeepSparkHub PaddleClas recipe as data: complete, self-consistent, and launched as its README says.

The expected reference tokens are each recipe's ``reference.command``, copied by hand from its
DeepSparkHub README (the provenance is in the recipe); these tests check that ``repro train --dry-run``
prints exactly that line, token for token, and that the recipe's other fields agree with it. Whether
the stored line equals the README was checked by reading the README (not repeatable here offline).
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.commands.smoke import RECIPE_ENV, SmokeResult, format_table, parse_args
from repro.core.errors import ReproError
from repro.judge.targets import choose_target
from repro.recipes.catalog import (
    Launch,
    MarkedOverride,
    available_recipes,
    launch_env,
    load_recipe,
    marked_overrides,
    recipe_problems,
)
from tests.doubles import CONFIG as DOUBLE_CONFIG, TRAIN_SCRIPT

EXPECTED = {
    "densenet": "DenseNet121", "efficientnet_b0": "EfficientNetB0", "googlenet": "GoogLeNet",
    "mobilenetv3": "MobileNetV3_small_x1_25", "mobilenetv3_large_x1_0": "MobileNetV3_large_x1_0",
    "pp-lcnet": "PPLCNet_x1_0", "repvgg": "RepVGG_A0", "res2net50_14w_8s": "Res2Net50_14w_8s",
    "resnest50": "ResNeSt50", "resnet50": "ResNet50", "se_resnet50_vd": "SE_ResNet50_vd",
    "shufflenetv2": "ShuffleNetV2_x1_0", "swin_transformer": "SwinTransformer_tiny_patch4_window7_224",
    "vgg": "VGG16", "xception": "Xception41",
}
NO_ACCURACY = {"googlenet", "mobilenetv3", "vgg"}
PROVENANCE = ("hardware", "sdk", "set_by", "source", "upstream_at_measurement", "inconsistencies", "status")
GPU_PLATFORM = "ixuca-bi-v100-sdk3.0.0"


def test_the_fifteen_recipes_are_there() -> None:
    assert set(available_recipes()) == set(EXPECTED)
    assert {name: load_recipe(name).arch for name in EXPECTED} == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_target_carries_its_provenance(name: str) -> None:
    recipe = load_recipe(name)
    info = recipe.data["target"]
    if name in NO_ACCURACY:
        assert recipe.target is None and info["status"] == "no accuracy stated"
        return
    assert recipe.target is not None and 0.6 < recipe.target.value < 0.85
    assert recipe.target.eval_set_size == 50000 and recipe.target.judged == "best"
    missing = [key for key in PROVENANCE if not info.get(key)]
    assert missing == [], f"{name} target lacks {missing}"
    assert "DeepSparkHub" in info["source"] and "SDK" in info["sdk"]
    assert f"x{recipe.reference_gpus}" in info["hardware"].replace(" ", "") or info["inconsistencies"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_fields_agree_with_the_readme_line(name: str) -> None:
    recipe = load_recipe(name)
    launch = recipe.launch
    assert launch is not None
    tokens = launch.tokens
    assert tokens[0] == "python3" and tokens[tokens.index("-c") + 1] == recipe.config
    listed = next((t.split("=", 1)[1] for t in tokens if t.startswith("--gpus=")), launch.env["CUDA_VISIBLE_DEVICES"])
    assert len(listed.split(",")) == recipe.reference_gpus
    assert launch.env["CUDA_VISIBLE_DEVICES"] == listed  # every README exports the same list it launches on
    assert recipe.data["reference"]["exports_flags"] == launch.exports_flags
    for value in recipe.reference_overrides:
        assert tokens[tokens.index(value) - 1] == "-o"


def fake_checkout(root: Path, config_path: str) -> Path:
    """A TEST DOUBLE checkout: the fake entry point and the double config at the recipe's path."""
    (root / "tools").mkdir(parents=True)
    shutil.copy(TRAIN_SCRIPT, root / "tools" / "train.py")
    target = root / config_path
    target.parent.mkdir(parents=True, exist_ok=True)
    # The double plus an AMP block like the pinned Swin config's (use_amp True), so -o AMP.* validates.
    target.write_text(DOUBLE_CONFIG.read_text() + "AMP:\n  use_amp: True\n  use_fp16_test: True\n  level: O2\n")
    return root


def dry_run(name: str, tmp_path: Path, *extra: str) -> list[str]:
    recipe = load_recipe(name)
    upstream = fake_checkout(tmp_path / "PaddleClas", recipe.config)
    result = CliRunner().invoke(cli, ["train", "--recipe", name, "--dry-run", "--platform", GPU_PLATFORM,
                                      "--upstream", str(upstream), "--logs-dir", str(tmp_path / "logs"), *extra])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dry_run_reference_line_equals_the_readme_command(name: str, tmp_path: Path) -> None:
    lines = dry_run(name, tmp_path)
    reference = lines[lines.index("reference command:") + 1].strip()
    recipe = load_recipe(name)
    assert shlex.split(reference) == shlex.split(recipe.data["reference"]["command"])
    # The environment: the README's FLAGS exactly when it exports them, its device list always.
    env = lines[lines.index("environment additions:") + 1:]
    env = [line.strip() for line in env if line.startswith("  ")]
    flags = {line.split("=", 1)[0] for line in env if line.startswith("FLAGS_")}
    assert flags == {k for k in recipe.launch.env if k.startswith("FLAGS_")}
    assert f"CUDA_VISIBLE_DEVICES={recipe.launch.env['CUDA_VISIBLE_DEVICES']}" in env


def test_harness_additions_are_marked_not_reference(tmp_path: Path) -> None:
    lines = dry_run("swin_transformer", tmp_path)
    marked = lines[lines.index("command to run ([harness: ...] and [user: ...] mark additions to the reference):") + 1]
    assert "[harness: -o AMP.use_amp=False -o AMP.use_fp16_test=False -o Global.output_dir=" in marked
    # A README without -o Global.device gets it as the harness's token, not as a reference one.
    lines = dry_run("xception", tmp_path / "x")
    marked = lines[3]
    assert "[harness: -o Global.device=gpu -o Global.output_dir=" in marked


def test_a_user_override_of_a_marked_key_replaces_the_recipe_one(tmp_path: Path) -> None:
    lines = dry_run("swin_transformer", tmp_path, "-o", "AMP.use_amp=True")  # a warning line comes first
    marked = lines[lines.index("command to run ([harness: ...] and [user: ...] mark additions to the reference):") + 1]
    assert "[user: -o AMP.use_amp=True]" in marked and "AMP.use_amp=False" not in marked
    assert "-o AMP.use_fp16_test=False" in marked


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_scale_lr_uses_the_recipe_keys(name: str, tmp_path: Path) -> None:
    recipe = load_recipe(name)
    lines = dry_run(name, tmp_path, "--gpus", "0,1", "--scale-lr")
    expected = repr(recipe.base_lr * 2 / recipe.reference_gpus)
    assert f"-o {recipe.lr_key}={expected}" in lines[3]
    assert any(f"global batch {recipe.batch_size_per_gpu} x 2" in line for line in lines)


def test_launch_parse_reads_the_readme_forms() -> None:
    launch = Launch.parse('python3 -m paddle.distributed.launch --gpus="0,1" tools/train.py -c ./a.yaml', {}, "tools/train.py")
    assert launch.launcher == ("python3", "-m", "paddle.distributed.launch")
    assert launch.devices_flag and not launch.device_override and launch.config_arg == "./a.yaml"
    launch = Launch.parse("python3 -u -m paddle.distributed.launch tools/train.py -c a.yaml -o Global.device=gpu -o X=1",
                          {"FLAGS_a": "True"}, "tools/train.py")
    assert not launch.devices_flag and launch.device_override and launch.overrides == ("X=1",) and launch.exports_flags
    for bad in ("python3 tools/train.py -c a.yaml", "python3 -m paddle.distributed.launch --ips=1 tools/train.py -c a",
                "python3 -m paddle.distributed.launch tools/train.py -c a.yaml --seed 1"):
        with pytest.raises(ValueError):
            Launch.parse(bad, {}, "tools/train.py")


def test_a_recipe_contradicting_its_readme_line_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (Path(__file__).parents[2] / "repro" / "recipes" / "densenet.yaml").read_text()
    (tmp_path / "densenet.yaml").write_text(text.replace("reference_gpus: 4", "reference_gpus: 8"))
    monkeypatch.setattr("repro.recipes.catalog.recipes_dir", lambda: tmp_path)
    with pytest.raises(ReproError, match="reference_gpus 8 is not the README's device list 0,1,2,3"):
        load_recipe("densenet")


def test_launch_env_drops_flags_the_readme_does_not_export() -> None:
    profile_env = {"FLAGS_cudnn_exhaustive_search": "True", "OTHER": "1"}
    assert launch_env(load_recipe("xception"), profile_env) == {"OTHER": "1"}
    assert launch_env(load_recipe("densenet"), profile_env) == profile_env


def test_marked_overrides_yield_to_the_user() -> None:
    recipe = SimpleNamespace(harness_overrides=(MarkedOverride("AMP.use_amp=False", "fp32"), MarkedOverride("A.b=1", "x")))
    assert marked_overrides(recipe, []) == ["AMP.use_amp=False", "A.b=1"]
    assert marked_overrides(recipe, ["AMP.use_amp=True"]) == ["A.b=1"]


def swin_like_config(**amp: object) -> dict:
    return {"Arch": {"name": "SwinTransformer_tiny_patch4_window7_224"}, "AMP": {"use_amp": True, "use_fp16_test": True, **amp}}


def test_recipe_problems_catch_amp_against_an_fp32_target() -> None:
    recipe = load_recipe("swin_transformer")
    problems = recipe_problems(recipe, swin_like_config())
    assert len(problems) == 2 and all("FP32" in line for line in problems)
    assert "AMP.use_amp is True" in problems[0]
    assert recipe_problems(recipe, swin_like_config(use_amp=False, use_fp16_test=False)) == []


def test_recipe_problems_catch_pretrained_weights() -> None:
    recipe = load_recipe("resnet50")
    assert any("Arch.pretrained is True" in line for line in recipe_problems(recipe, {"Arch": {"pretrained": True}}))
    assert recipe_problems(recipe, {"Arch": {"pretrained": False}}) == []
    assert recipe_problems(recipe, {"Arch": {}}) == []  # absent means the constructor's default, False


def test_recipe_problems_check_the_list_prefixes() -> None:
    recipe = load_recipe("xception")
    heads = {"Train": "n01440764/n01440764_10026.JPEG 0", "Eval": "val/n01667114/x.JPEG 35"}
    problems = recipe_problems(recipe, {}, heads)
    assert len(problems) == 1 and "'train/' prefix" in problems[0] and "n01440764/n01440764_10026.JPEG" in problems[0]
    assert recipe_problems(recipe, {}, {"Train": "train/a.JPEG 0", "Eval": "val/b.JPEG 1"}) == []
    assert recipe_problems(recipe, {}, {"Train": None}) == []  # unreadable: the dataset check reports it


def test_bad_trap_kind_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (Path(__file__).parents[2] / "repro" / "recipes" / "vgg.yaml").read_text()
    (tmp_path / "vgg.yaml").write_text(text.replace("- kind: note", "- kind: notte", 1))
    monkeypatch.setattr("repro.recipes.catalog.recipes_dir", lambda: tmp_path)
    with pytest.raises(ReproError, match="trap .* needs kind"):
        load_recipe("vgg")


def test_check_accuracy_says_there_is_no_target(tmp_path: Path) -> None:
    run = SimpleNamespace(manifest={"recipe": {"name": "vgg"}, "target": None}, files=SimpleNamespace(root=tmp_path),
                          warnings=[])
    with pytest.raises(ReproError, match="recipe vgg has no target \\(no accuracy stated\\).*--target VALUE") as error:
        choose_target(run)
    assert error.value.exit_code == 2
    assert choose_target(run, target=0.7).target.value == 0.7


def test_repro_recipes_lists_and_shows() -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["recipes"])
    assert listed.exit_code == 0 and "15 recipes" in listed.output
    assert "vgg  " in listed.output and "no accuracy stated" in listed.output

    rows = json.loads(runner.invoke(cli, ["recipes", "--json"]).output)
    assert {row["name"] for row in rows} == set(EXPECTED)
    assert next(r for r in rows if r["name"] == "xception") | {"hardware": None} == {
        "name": "xception", "model": "Xception41", "gpus": 8, "target": 0.783, "metric": "top1",
        "target_status": "stated (BI-V100 x8; release/2.5)", "hardware": None,
        "config": "./ppcls/configs/ImageNet/Xception/Xception41.yaml"}
    shown = runner.invoke(cli, ["recipes", "show", "swin_transformer"])
    assert shown.exit_code == 0
    assert "harness override: -o AMP.use_amp=False" in shown.output and "fdc9fd3d, 2023-03-03" in shown.output
    unknown = runner.invoke(cli, ["recipes", "show", "nope"])
    assert unknown.exit_code == 2 and "unknown recipe 'nope'; choose one of: densenet" in unknown.output


def test_smoke_all_table() -> None:
    lines = format_table([SmokeResult("vgg", 0, 95.4, None, "PASS"), SmokeResult("densenet", 1, 80.0, 0.25, "FAIL: x")])
    assert lines[0].split() == ["recipe", "seconds", "best", "top-1", "verdict"]
    assert lines[1].split() == ["vgg", "95", "-", "PASS"] and lines[2].split() == ["densenet", "80", "0.250", "FAIL:", "x"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_recipe_has_a_smoke_that_says_what_it_checks(name: str) -> None:
    section = load_recipe(name).data["smoke"]
    assert section["cpu_ranks"] == 2 and section["check"] in ("accuracy", "loss_falls")
    assert section["target"]["eval_set_size"] == section["dataset"]["classes"] * section["dataset"]["val_per_class"]
    if section["check"] == "loss_falls":
        assert section["target"]["value"] == 0.0 and section.get("check_why")
    else:
        assert section["target"]["value"] > section["target"]["chance"]


def test_smoke_recipe_comes_from_make(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RECIPE_ENV, raising=False)
    assert parse_args([]).recipe == "resnest50"
    monkeypatch.setenv(RECIPE_ENV, "vgg")
    assert parse_args([]).recipe == "vgg" and parse_args(["--recipe", "xception"]).recipe == "xception"


def test_make_passes_recipe_through_the_environment() -> None:
    done = __import__("subprocess").run(
        ["make", "--no-print-directory", "-n", "-C", str(Path(__file__).parents[2]), "smoke", "smoke-all", "train",
         "RECIPE=vgg;touch /tmp/repro-pwned"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "No rule" in done.stderr:
        pytest.skip("make cannot resolve the venv target here")
    assert "pwned" not in done.stdout
    assert "-m repro.commands.smoke --all" in done.stdout and ".venv/bin/repro train" in done.stdout
