"""Override validation and the derived smoke config, on a small config written here (not upstream's)."""

from __future__ import annotations

import shlex
import warnings
from pathlib import Path

import pytest
import yaml

from repro.core.errors import EXIT_BAD_INPUT, EXIT_UPSTREAM, ReproError
from repro.recipes.catalog import Recipe, Target, load_recipe
from repro.run.rundir import CONFIG as RECORD_NAME
from repro.run.rundir import SMOKE_CONFIG as SMOKE_CONFIG_NAME
from repro.launch.config import apply_smoke_edits, resolve_config
from repro.core.dotted import lookup, suggest_keys
from repro.launch.upstream_config import (
    as_upstream_parses,
    check_value,
    upstream_module_names,
)

CONFIG_PATH = "ppcls/configs/Tiny/Tiny.yaml"
# Shaped like a PaddleClas config (sections, op lists, a string that is arithmetic), but small and ours.
CONFIG_TEXT = """\
Global:
  checkpoints: null
  output_dir: ./output/
  device: gpu
  save_interval: 1
  eval_interval: 1
  epochs: 300
  print_batch_step: 10
  image_shape: [3, 224, 224]
Arch:
  name: TinyNet
  class_num: 1000
Optimizer:
  name: Momentum
  lr:
    name: Cosine
    learning_rate: 0.1
DataLoader:
  Train:
    dataset:
      name: ImageNetDataset
      image_root: ./dataset/ILSVRC2012/
      cls_label_path: ./dataset/ILSVRC2012/train_list.txt
      transform_ops:
        - DecodeImage:
            to_rgb: True
        - RandCropImage:
            size: 224
        - AutoAugment:
        - NormalizeImage:
            scale: 1.0/255.0
            order: ''
      batch_transform_ops:
        - MixupOperator:
            alpha: 0.2
    sampler:
      batch_size: 64
  Eval:
    dataset:
      transform_ops:
        - ResizeImage:
            resize_short: 256
        - CropImage:
            size: 224
    sampler:
      batch_size: 64
"""

SMOKE = {
    "cpu_ranks": 2,
    "dataset": {"classes": 4, "train_per_class": 32, "val_per_class": 8, "size": 72},
    "config": {
        "remove": [
            "DataLoader.Train.dataset.transform_ops[AutoAugment]",
            "DataLoader.Train.dataset.batch_transform_ops",
        ],
        "set": {
            "Global.epochs": 5,
            "Arch.class_num": 4,
            "DataLoader.Train.dataset.transform_ops[RandCropImage].RandCropImage.size": 32,
            "DataLoader.Eval.dataset.transform_ops[CropImage].CropImage.size": 32,
            "+Optimizer.lr.warmup_epoch": 1,
        },
    },
    "target": {"metric": "top1", "value": 0.5, "eval_set_size": 32, "note": "test"},
}


def make_recipe(smoke: dict | None = None) -> Recipe:
    data = {"smoke": smoke} if smoke is not None else {}
    return Recipe(
        name="tiny",
        arch="TinyNet",
        config=CONFIG_PATH,
        entry="tools/train.py",
        reference_overrides=("Arch.pretrained=False",),
        reference_gpus=4,
        batch_size_per_gpu=64,
        batch_size_key="DataLoader.Train.sampler.batch_size",
        base_lr=0.1,
        lr_key="Optimizer.lr.learning_rate",
        checkpoint_mb=200,
        class_num=1000,
        target=Target(metric="top1", value=0.7677, eval_set_size=50000),
        data=data,
    )


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    root = tmp_path / "upstream"
    config = root / CONFIG_PATH
    config.parent.mkdir(parents=True)
    config.write_text(CONFIG_TEXT, encoding="utf-8")
    return root


def resolve(upstream: Path, tmp_path: Path, overrides: list[str], **kwargs) -> object:
    return resolve_config(
        upstream, kwargs.pop("recipe", make_recipe(SMOKE)), overrides, device="cpu", run_dir=tmp_path / "run", **kwargs
    )


NAMES = upstream_module_names(None)


def test_reference_run_uses_the_upstream_config_and_records_the_resolved_one(upstream: Path, tmp_path: Path) -> None:
    resolved = resolve(upstream, tmp_path, ["Global.epochs=120", "Optimizer.lr.learning_rate=0.05"])
    assert resolved.config_arg == CONFIG_PATH
    assert resolved.overrides == ["Global.epochs=120", "Optimizer.lr.learning_rate=0.05"]
    assert resolved.epochs == 120 and resolved.save_interval == 1 and resolved.class_num == 1000
    assert resolved.arch == "TinyNet" and resolved.target is None
    config = resolved.config
    assert config["Global"]["device"] == "cpu"
    assert config["Arch"]["pretrained"] is False  # the recipe's reference override
    assert config["Global"]["output_dir"] == str(tmp_path / "run" / "output")
    record = tmp_path / "run" / RECORD_NAME
    text = record.read_text(encoding="utf-8")
    assert text.startswith("# RECORD, NOT AN INPUT")
    assert yaml.safe_load(text)["Optimizer"]["lr"]["learning_rate"] == 0.05
    assert not (tmp_path / "run" / SMOKE_CONFIG_NAME).exists()


def test_unknown_key_is_refused_with_the_nearest_keys(upstream: Path, tmp_path: Path) -> None:
    with pytest.raises(ReproError) as error:
        resolve(upstream, tmp_path, ["Global.epoch=5"])
    assert error.value.exit_code == EXIT_BAD_INPUT  # a bad -o, like every other one (issue 10)
    assert "Global.epochs" in error.value.message
    assert "+Global.epoch=VALUE" in error.value.message
    assert not (tmp_path / "run" / RECORD_NAME).exists()


def test_suggestions_find_a_misspelt_leaf_deep_in_the_config() -> None:
    config = as_upstream_parses(yaml.safe_load(CONFIG_TEXT))
    assert "Optimizer.lr.learning_rate" in suggest_keys("Optimizer.lr.learning_rat", config)


def test_plus_prefix_adds_a_key_on_purpose_and_refuses_an_existing_one(upstream: Path, tmp_path: Path) -> None:
    resolved = resolve(upstream, tmp_path, ["+Optimizer.lr.warmup_epoch=5"])
    assert resolved.overrides == ["Optimizer.lr.warmup_epoch=5"]  # upstream never sees the "+"
    assert resolved.config["Optimizer"]["lr"]["warmup_epoch"] == 5
    with pytest.raises(ReproError, match="drop the"):
        resolve(upstream, tmp_path, ["+Global.epochs=5"])


def test_list_items_are_addressed_by_index_like_upstream(upstream: Path, tmp_path: Path) -> None:
    resolved = resolve(upstream, tmp_path, ["DataLoader.Train.dataset.transform_ops.1.RandCropImage.size=32"])
    assert resolved.config["DataLoader"]["Train"]["dataset"]["transform_ops"][1]["RandCropImage"]["size"] == 32
    with pytest.raises(ReproError, match="out of range") as error:
        resolve(upstream, tmp_path, ["DataLoader.Train.dataset.transform_ops.9.RandCropImage.size=32"])
    assert error.value.exit_code == EXIT_BAD_INPUT
    with pytest.raises(ReproError, match="by index"):
        resolve(upstream, tmp_path, ["DataLoader.Train.dataset.transform_ops.RandCropImage.size=32"])


def test_a_section_cannot_be_replaced_by_a_value(upstream: Path, tmp_path: Path) -> None:
    with pytest.raises(ReproError, match="is a section") as error:
        resolve(upstream, tmp_path, ["Optimizer.lr=0.1"])
    assert "Optimizer.lr.name" in error.value.message


@pytest.mark.parametrize(
    "value",
    ["{a: 1}", "[[1, 2]]", "(1, 2)"],
)
def test_non_scalar_values_are_refused(value: str) -> None:
    with pytest.raises(ReproError) as error:
        check_value("Global.epochs", value, NAMES)
    assert error.value.exit_code == EXIT_BAD_INPUT


@pytest.mark.parametrize(
    "value",
    ["__import__('os').system('true')", "os", "print", "1.0/255.0", "[a, b]", "open('x')", "not True", "__name__"],
)
def test_values_upstream_would_run_as_code_are_refused(value: str) -> None:
    with pytest.raises(ReproError, match="Python code"):
        check_value("Global.epochs", value, NAMES)


def test_module_names_are_read_from_the_upstream_parser(tmp_path: Path) -> None:
    module = tmp_path / "ppcls" / "utils" / "config.py"
    module.parent.mkdir(parents=True)
    module.write_text("import somelib\ndef helper():\n    pass\nTHING = 1\n", encoding="utf-8")
    names = upstream_module_names(tmp_path)
    assert {"somelib", "helper", "THING", "len"} <= names
    with pytest.raises(ReproError, match="quote it|'helper'"):
        check_value("Arch.name", "helper", names)
    assert check_value("Arch.name", "ResNet50", names) == "ResNet50"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", 5),
        ("0.05", 0.05),
        ("True", True),
        ("None", None),
        ("1e-3", 0.001),
        ("ResNet50", "ResNet50"),
        ("./output/run1/", "./output/run1/"),
        ("'quoted text'", "quoted text"),
        ("[3, 32, 32]", [3, 32, 32]),
        ("['a', 'b']", ["a", "b"]),
    ],
)
def test_plain_values_pass_and_mean_what_upstream_reads(text: str, expected: object) -> None:
    value = check_value("K", text, NAMES)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(("text", "fix"), [("true", "K=True"), ("no", "K=False"), ("null", "K=None"), ("~", "K=None")])
def test_yaml_words_upstream_reads_as_strings_are_refused_with_the_python_spelling(text: str, fix: str) -> None:
    with pytest.raises(ReproError) as error:
        check_value("K", text, NAMES)
    assert fix in error.value.message


@pytest.mark.parametrize(
    ("option", "pointer"),
    [
        ("Global.output_dir=/tmp/x", "--run-dir"),
        ("Global.checkpoints=/tmp/x/latest", "--resume"),
        ("Global.device=gpu", "--platform"),
        ("+Global.seed=3", "--seed"),
    ],
)
def test_harness_owned_keys_point_at_their_option(upstream: Path, tmp_path: Path, option: str, pointer: str) -> None:
    with pytest.raises(ReproError) as error:
        resolve(upstream, tmp_path, [option])
    assert pointer in error.value.message


@pytest.mark.parametrize("option", ["Global.epochs", "Global.epochs=1=2"])
def test_options_upstream_cannot_split_are_refused(upstream: Path, tmp_path: Path, option: str) -> None:
    with pytest.raises(ReproError, match="KEY=VALUE"):
        resolve(upstream, tmp_path, [option])


def test_smoke_writes_a_derived_config_in_the_run_dir_and_leaves_upstream_untouched(upstream: Path, tmp_path: Path) -> None:
    original = (upstream / CONFIG_PATH).read_bytes()
    resolved = resolve(upstream, tmp_path, ["Global.print_batch_step=1"], smoke=True)
    derived = tmp_path / "run" / SMOKE_CONFIG_NAME
    assert resolved.config_arg == str(derived.resolve())
    assert (upstream / CONFIG_PATH).read_bytes() == original
    written = yaml.safe_load(derived.read_text(encoding="utf-8"))
    ops = written["DataLoader"]["Train"]["dataset"]["transform_ops"]
    assert [next(iter(op)) for op in ops] == ["DecodeImage", "RandCropImage", "NormalizeImage"]
    assert "batch_transform_ops" not in written["DataLoader"]["Train"]["dataset"]
    assert ops[1]["RandCropImage"]["size"] == 32
    assert written["DataLoader"]["Eval"]["dataset"]["transform_ops"][1]["CropImage"]["size"] == 32
    assert written["Optimizer"]["lr"]["warmup_epoch"] == 1
    assert written["DataLoader"]["Train"]["dataset"]["transform_ops"][2]["NormalizeImage"]["scale"] == "1.0/255.0"
    assert resolved.epochs == 5 and resolved.class_num == 4
    assert resolved.target == Target.from_dict(SMOKE["target"])
    assert resolved.overrides == ["Global.print_batch_step=1"]
    assert resolved.config["Global"]["print_batch_step"] == 1


def test_user_overrides_are_checked_against_the_derived_smoke_config(upstream: Path, tmp_path: Path) -> None:
    # AutoAugment is gone in the smoke config, so index 2 is NormalizeImage there.
    resolved = resolve(upstream, tmp_path, ["DataLoader.Train.dataset.transform_ops.2.NormalizeImage.order=chw"], smoke=True)
    assert resolved.config["DataLoader"]["Train"]["dataset"]["transform_ops"][2]["NormalizeImage"]["order"] == "chw"


def test_smoke_edit_naming_a_missing_op_fails_loudly() -> None:
    raw = yaml.safe_load(CONFIG_TEXT)
    with pytest.raises(ReproError, match="0 items named RandomErasing"):
        apply_smoke_edits(raw, {"remove": ["DataLoader.Train.dataset.transform_ops[RandomErasing]"]})
    with pytest.raises(ReproError, match="no key"):
        apply_smoke_edits(raw, {"set": {"Global.epoch": 3}})


def test_smoke_without_a_smoke_section_is_refused(upstream: Path, tmp_path: Path) -> None:
    with pytest.raises(ReproError, match="no smoke section"):
        resolve(upstream, tmp_path, [], smoke=True, recipe=make_recipe(None))


def test_parsing_mirrors_upstream_literal_eval_of_nested_strings() -> None:
    parsed = as_upstream_parses({"A": {"b": "[1, 2]", "c": "1.0/255.0", "d": ""}, "L": [{"x": "5"}]})
    assert parsed["A"]["b"] == [1, 2]  # literal_eval'd, as upstream's create_attr_dict does
    assert parsed["A"]["c"] == "1.0/255.0" and parsed["A"]["d"] == ""
    assert parsed["L"][0]["x"] == "5"  # lists are not descended into upstream either


def test_missing_upstream_config_says_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(ReproError, match="repro upstream fetch") as error:
        resolve_config(tmp_path, make_recipe(), [], device="cpu", run_dir=tmp_path / "run")
    assert error.value.exit_code == EXIT_UPSTREAM


def test_the_shipped_recipe_smoke_section_applies_to_a_config_of_upstream_shape(upstream: Path, tmp_path: Path) -> None:
    recipe = load_recipe("resnest50")
    smoke = recipe.data["smoke"]
    edited = apply_smoke_edits(yaml.safe_load(CONFIG_TEXT), {"remove": smoke["config"]["remove"]})
    assert "batch_transform_ops" not in edited["DataLoader"]["Train"]["dataset"]
    target = Target.from_dict(smoke["target"])
    classes = smoke["dataset"]["classes"]
    assert target.value > 1 / classes  # above chance, or the smoke proves nothing
    assert target.eval_set_size == classes * smoke["dataset"]["val_per_class"]


@pytest.mark.parametrize(("option", "words"), [("Global.epochs=12O", "is a number"), ("Global.epochs=None", "is a number")])
def test_a_number_must_stay_a_number(upstream: Path, tmp_path: Path, option: str, words: str) -> None:
    with pytest.raises(ReproError, match=words):
        resolve(upstream, tmp_path, [option])


def test_a_switch_must_stay_a_switch(upstream: Path, tmp_path: Path) -> None:
    with pytest.raises(ReproError, match="True or False"):
        resolve(upstream, tmp_path, ["DataLoader.Train.dataset.transform_ops.0.DecodeImage.to_rgb=1"])
    resolved = resolve(upstream, tmp_path, ["DataLoader.Train.dataset.transform_ops.0.DecodeImage.to_rgb=False"])
    assert resolved.config["DataLoader"]["Train"]["dataset"]["transform_ops"][0]["DecodeImage"]["to_rgb"] is False


@pytest.mark.parametrize("option, words", [
    ("Global.epochs=-5", "Global.epochs=-5: must be a whole number of epochs"),
    ("Global.epochs=1.5", "Global.epochs=1.5: must be a whole number of epochs"),
    ("Optimizer.lr.learning_rate=0", "learning_rate=0: must be a finite number above 0"),
    ("DataLoader.Train.sampler.batch_size=0", "batch_size=0: must be a whole number"),
])
def test_values_upstream_would_choke_on_are_refused_before_launch(upstream: Path, tmp_path: Path, option, words) -> None:
    # -5 epochs "completed" with nothing trained; 1.5 and a negative seed crashed upstream after start-up.
    with pytest.raises(ReproError, match=words) as error:
        resolve(upstream, tmp_path, [option])
    assert error.value.exit_code == EXIT_BAD_INPUT


def test_a_seed_numpy_cannot_take_is_refused(upstream: Path, tmp_path: Path) -> None:
    with pytest.raises(ReproError, match="Global.seed=-1: must be a whole number from 0"):
        resolve(upstream, tmp_path, [], seed=-1)


def test_a_key_that_is_no_dotted_name_never_reaches_upstreams_argparse(upstream: Path, tmp_path: Path) -> None:
    # "-o +--foo=1" would reach upstream as "-o --foo=1", an option of its own command line.
    with pytest.raises(ReproError, match="is not a config key") as error:
        resolve(upstream, tmp_path, ["+--foo=1"])
    assert error.value.exit_code == EXIT_BAD_INPUT


def test_the_unknown_key_fix_works_for_a_new_section_too(upstream: Path, tmp_path: Path) -> None:
    """The refusal of an unknown key prints `+KEY=VALUE` as its fix; that must work when the key's section
    is missing too (upstream's override creates it), and `+` on a value's sub-key is still refused."""
    with pytest.raises(ReproError) as error:
        resolve(upstream, tmp_path, ["NewSection.inner.x=1"])
    assert "+NewSection.inner.x=VALUE" in error.value.message
    resolved = resolve(upstream, tmp_path, ["+NewSection.inner.x=1"])
    assert resolved.overrides == ["NewSection.inner.x=1"] and resolved.config["NewSection"] == {"inner": {"x": 1}}
    with pytest.raises(ReproError, match="is a value"):
        resolve(upstream, tmp_path, ["+Global.epochs.x=1"])


@pytest.mark.parametrize(
    ("option", "meant"),
    [
        ("Arch.name=os", "os"),
        ("Arch.name=2020-01-01", "2020-01-01"),
        ("Global.image_shape=[3,os]", [3, "os"]),
        ("+Arch.extra=print", "print"),
        ("+Arch.extra=2020-01-01", "2020-01-01"),
    ],
)
def test_a_printed_value_fix_works_when_typed_into_a_shell(upstream: Path, tmp_path: Path, option: str,
                                                          meant: object) -> None:
    """The fix a value refusal prints (`write -o ...`) is a shell command line: typed as printed, the shell
    must hand over the quotes and spaces it needs, and it keeps the `+` of a new key."""
    with pytest.raises(ReproError) as error:
        resolve(upstream, tmp_path, [option])
    typed = shlex.split(error.value.message.rsplit(": ", 1)[-1].split("write ")[-1].split(" to mean ")[0])
    assert typed[0] == "-o" and len(typed) == 2, error.value.message
    assert len(typed[1].split()) == 1, typed  # also as `make train OVERRIDES=...`: click splits it on spaces
    resolved = resolve(upstream, tmp_path, [typed[1]])
    key = option.split("=")[0].lstrip("+")
    assert resolved.overrides == [f"{key}={typed[1].split('=', 1)[1]}"]
    assert lookup(resolved.config, key) == (True, meant)


def test_the_section_refusals_example_key_can_be_overridden(upstream: Path, tmp_path: Path) -> None:
    """`-o Global=3` names a key inside Global as its example; that key must not be one the harness owns
    (Global.checkpoints, Global.output_dir), which -o refuses."""
    with pytest.raises(ReproError) as error:
        resolve(upstream, tmp_path, ["Global=3"])
    example = error.value.message.split("(e.g. -o ", 1)[1].split("=...", 1)[0]
    default = lookup(yaml.safe_load(CONFIG_TEXT), example)[1]
    resolve(upstream, tmp_path, [f"{example}={default!r}"])


@pytest.mark.parametrize("option", ["Global.epochs=1or", "Arch.name=1or", "Arch.name=3if"])
def test_a_value_python_warns_about_reaches_the_user_as_our_line_only(option: str, upstream: Path, tmp_path: Path) -> None:
    """`1or` compiles with "SyntaxWarning: invalid decimal literal", which Python prints on the user's terminal
    above the harness's one line (or above the dry run); reading a value must not compile it noisily."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            resolve(upstream, tmp_path, [option])
        except ReproError as error:
            assert "is a number" in error.message
    assert [str(w.message) for w in seen] == []
