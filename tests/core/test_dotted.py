"""The one dotted-key walker: what -o, the smoke edits and the recipe traps all rely on."""

import pytest

from repro.core.dotted import locate, lookup
from repro.core.errors import ReproError

CONFIG = {"Global": {"epochs": 300, "device": "gpu"},
          "DataLoader": {"Train": {"dataset": {"transform_ops": [{"DecodeImage": {}}, {"RandCropImage": {"size": 224}}]}}}}


def test_lookup_reads_mappings_list_indexes_and_named_list_items() -> None:
    assert lookup(CONFIG, "Global.epochs") == (True, 300)
    assert lookup(CONFIG, "DataLoader.Train.dataset.transform_ops.1.RandCropImage.size") == (True, 224)
    assert lookup(CONFIG, "DataLoader.Train.dataset.transform_ops[RandCropImage].RandCropImage.size") == (True, 224)


@pytest.mark.parametrize("key", ["Global.epoch", "Global.epochs.x", "DataLoader.Train.dataset.transform_ops.7", "", "a..b"])
def test_lookup_of_what_is_not_there_is_not_found_and_locate_refuses_it(key: str) -> None:
    assert lookup(CONFIG, key) == (False, None)
    with pytest.raises(ReproError):
        locate(CONFIG, key)


def test_unknown_key_names_the_nearest_ones() -> None:
    with pytest.raises(ReproError, match="did you mean Global.epochs"):
        locate(CONFIG, "Global.epoch")


def test_create_parents_makes_missing_sections_like_upstream_override() -> None:
    config = {"Global": {}}
    container, slot = locate(config, "Arch.pretrained", create_parents=True)
    container[slot] = False
    assert config["Arch"] == {"pretrained": False}
