"""The tiny dataset read by upstream's own ImageNetDataset (needs REPRO_TEST_UPSTREAM).

Run in a subprocess so paddle is not imported into the test process (import order with sklearn
matters, see upstream-facts).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from repro.dataset.tiny import make_tiny

READER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from ppcls.data.dataloader.imagenet_dataset import ImageNetDataset
ops = [{"DecodeImage": {"to_rgb": True, "channel_first": False}}, {"ResizeImage": {"resize_short": 36}},
       {"CropImage": {"size": 32}}]
out = {}
for name in ("train_list.txt", "val_list.txt"):
    data = ImageNetDataset(sys.argv[2] + "/", sys.argv[2] + "/" + name, transform_ops=ops)
    image, label = data[len(data) - 1]
    out[name] = [len(data), list(image.shape), int(label), sorted({int(x) for x in data.labels})]
print(json.dumps(out))
"""


def test_upstream_imagenet_dataset_reads_the_tiny_set(real_upstream: Path, tmp_path: Path) -> None:
    out = make_tiny(tmp_path / "t", classes=4, train_per_class=3, val_per_class=2, size=40)
    result = subprocess.run(
        [sys.executable, "-c", READER, str(real_upstream), str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["train_list.txt"] == [12, [3, 32, 32], 3, [0, 1, 2, 3]]
    assert seen["val_list.txt"] == [8, [3, 32, 32], 3, [0, 1, 2, 3]]
