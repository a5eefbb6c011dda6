"""TEST DOUBLE of PaddleClas ``tools/train.py`` for repro's tests. Not upstream code.

Parses ``-c``/``-o`` the way upstream does (dotted keys, YAML-ish values), prints upstream-format
log lines to stdout and to ``Global.output_dir/train.log`` (appending, like upstream), writes tiny
``epoch_N``/``latest``/``best_model`` checkpoints (.pdparams, .pdopt, .pdstates, in upstream's
order, .pdstates as a plain pickle of ``{"metric", "epoch"}``), resumes from ``Global.checkpoints``
and resets its best metric on resume, as upstream does. Only global rank 0 writes files.

Knobs (environment variables):
  FAKE_SLEEP=S          seconds of "training" per epoch (default 0.05)
  FAKE_CRASH_EPOCH=K    crash during epoch K ...
  FAKE_CRASH_RANK=R     ... on rank R (default 1)
  FAKE_HANG=1           ignore SIGTERM and hang in epoch 1 (forces the harness to kill by PID)
  FAKE_CHILD=1          start a child process per rank (like a DataLoader worker)
  FAKE_TOP1=a,b,c       eval top-1 per epoch (default rising)
"""

import argparse
import datetime
import os
import pickle
import signal
import subprocess
import sys
import time

import yaml


def now():
    return datetime.datetime.now().strftime("%Y/%m/%d %H:%M:%S")


def set_key(config, dotted, value):
    keys = dotted.split(".")
    node = config
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    node[keys[-1]] = yaml.safe_load(value)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-o", "--override", action="append", default=[])
    args = parser.parse_args()
    with open(args.config) as handle:
        config = yaml.safe_load(handle)
    for item in args.override:
        key, _, value = item.partition("=")
        set_key(config, key, value)
    g = config["Global"]
    rank = int(os.environ.get("PADDLE_TRAINER_ID", "0"))
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    print(f"fake-train rank {rank} of {world} device {g['device']} seed {g.get('seed')}", flush=True)
    out = g["output_dir"]
    epochs = int(g["epochs"])
    log = None
    if rank == 0:
        os.makedirs(out, exist_ok=True)
        log = open(os.path.join(out, "train.log"), "a")

    def info(text):
        line = f"[{now()}] ppcls INFO: {text}"
        if log is not None:
            print(line, flush=True)
            log.write(line + "\n")
            log.flush()

    info(f"    checkpoints : {g.get('checkpoints')}")
    info(f"    epochs : {epochs}")
    info(f"    output_dir : {out}")
    info(f"train with paddle 2.6.2 and device Place({g['device']})")
    start, best = 1, 0.0
    if g.get("checkpoints"):
        with open(g["checkpoints"] + ".pdstates", "rb") as handle:
            state = pickle.load(handle)
        start = int(state["epoch"]) + 1
        info(f"Finish load checkpoints from {g['checkpoints']}")
    if os.environ.get("FAKE_CHILD"):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", f"Global.output_dir={out}"])
    top1s = [float(x) for x in os.environ.get("FAKE_TOP1", "").split(",") if x]
    sleep = float(os.environ.get("FAKE_SLEEP", "0.05"))
    crash_epoch = int(os.environ.get("FAKE_CRASH_EPOCH", "0"))
    crash_rank = int(os.environ.get("FAKE_CRASH_RANK", "1"))
    for epoch in range(start, epochs + 1):
        if os.environ.get("FAKE_HANG"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(1)
        for it in range(2):
            info(f"[Train][Epoch {epoch}/{epochs}][Iter: {it}/2]lr(Cosine): 0.10000000, CELoss: 2.30000, "
                 f"loss: 2.30000, batch_cost: 0.10000s, reader_cost: 0.01000, ips: 160.00000 samples/s, eta: 0:00:01")
            time.sleep(sleep / 2)
            if epoch == crash_epoch and rank == crash_rank:
                print(f"fake-train rank {rank}: about to fail in epoch {epoch}", flush=True)
                raise RuntimeError(f"fake failure on rank {rank} in epoch {epoch}")
        info(f"[Train][Epoch {epoch}/{epochs}][Avg]CELoss: 2.30000, loss: 2.30000")
        top1 = top1s[epoch - 1] if epoch - 1 < len(top1s) else min(1.0, 0.1 * epoch)
        info(f"[Eval][Epoch {epoch}][Avg]CELoss: 1.00000, loss: 1.00000, top1: {top1:.5f}, top5: 1.00000")
        if top1 >= best:
            best = top1
        info(f"[Eval][Epoch {epoch}][best metric: {best}]")
        if rank != 0:
            continue

        def save(prefix):
            base = os.path.join(out, prefix)
            for suffix, payload in ((".pdparams", b"params"), (".pdopt", b"opt")):
                with open(base + suffix, "wb") as handle:
                    handle.write(payload + f" epoch {epoch}".encode())
            with open(base + ".pdstates", "wb") as handle:
                pickle.dump({"metric": top1, "epoch": epoch}, handle)
            info(f"Already save model in {base}")

        if top1 >= best:
            save("best_model")
        if int(g.get("save_interval", 1)) > 0 and epoch % int(g.get("save_interval", 1)) == 0:
            save(f"epoch_{epoch}")
        save("latest")


if __name__ == "__main__":
    main()
