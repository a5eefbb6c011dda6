"""TEST DOUBLE of PaddleClas ``tools/eval.py`` for repro's tests. Not upstream code.

Reads ``-c``/``-o`` with the same rules as ``fake_train.py`` (upstream's ``ppcls/utils/config.py``),
loads ``Global.pretrained_model + ".pdparams"`` (failing like upstream when it is missing), and on
global rank 0 logs like upstream's ``Engine(mode="eval")`` to stdout and ``Global.output_dir/eval.log``:
the banner, the config echo, the device line, then the eval iteration lines and the
``[Eval][Epoch 0][Avg]`` line (standalone eval is epoch 0). The lines come from ``FakeUpstreamLog``.

The top-1 "the weights score" is the one the double's training logged for the epoch those weights
are from (``fake_train.py`` writes ``params epoch N`` into ``.pdparams``): ``FAKE_TOP1`` or 0.1 x epoch.

Knobs (environment variables):
  FAKE_TOP1=a,b,c        as for fake_train.py
  FAKE_EVAL_DELTA=d      add d to the top-1 (a standalone eval that disagrees with the log)
  FAKE_EVAL_FAIL=1       raise before the eval (a broken eval)
"""

import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
from fake_train import EVAL_ITERS, load_config  # noqa: E402
from logfakes import FakeUpstreamLog  # noqa: E402


def main():
    parser = argparse.ArgumentParser("fake eval script")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("-p", "--profiler_options", default=None)
    args = parser.parse_args()
    config = load_config(args.config, args.override)
    g = config["Global"]
    rank = int(os.environ.get("PADDLE_TRAINER_ID", "0"))
    weights = str(g["pretrained_model"]) + ".pdparams"
    with open(weights, "rb") as handle:  # upstream's load_dygraph_pretrain fails on a missing file too
        content = handle.read().decode("utf-8", "replace")
    if os.environ.get("FAKE_EVAL_FAIL"):
        raise RuntimeError("fake eval failure")
    match = re.search(r"epoch (\d+)", content)
    epoch = int(match.group(1)) if match else 1
    top1s = [float(x) for x in os.environ.get("FAKE_TOP1", "").split(",") if x]
    top1 = top1s[epoch - 1] if epoch - 1 < len(top1s) else min(1.0, 0.1 * epoch)
    top1 += float(os.environ.get("FAKE_EVAL_DELTA", "0"))
    if rank != 0:
        return
    fmt = FakeUpstreamLog(arch=config["Arch"]["name"], epochs=int(g["epochs"]),
                          class_num=config["Arch"].get("class_num", 1000), eval_iters=EVAL_ITERS,
                          output_dir=g["output_dir"], realtime=True)
    os.makedirs(g["output_dir"], exist_ok=True)
    lines = fmt.startup(config=config, device=g["device"], world_size=4)
    lines += [fmt.eval_iter(0, it, top1) for it in range(EVAL_ITERS)]
    lines.append(fmt.eval_avg(0, top1))
    with open(os.path.join(g["output_dir"], "eval.log"), "a") as log:
        for line in lines:
            print(line, flush=True)
            log.write(line + "\n")


if __name__ == "__main__":
    main()
