"""TEST DOUBLE of PaddleClas ``tools/train.py`` for repro's tests. Not upstream code.

Reads ``-c``/``-o``/``-p`` with upstream's rules (``ppcls/utils/config.py``): string values in the
YAML go through ``ast.literal_eval``; an ``-o key.path=value`` splits the key on ``.``, indexes lists
by number, creates missing keys (printing ``A new field (k) detected!`` to stdout), and the value is
``eval()``-ed, falling back to the raw string when that raises. Then, on global rank 0 only, it logs
like upstream's ``Engine`` to stdout and to ``Global.output_dir/train.log`` (appending): the banner,
the indented config echo (``Global : `` headers, ``    key : value`` lines, dashed rules), ``train
with paddle 2.6.2 and device Place(cpu)``, the world-size warning, ``Finish load checkpoints from``
on resume, then per epoch the train iteration and average lines, eval iteration and average lines,
``[best metric: x]`` and the saves. Every line comes from ``FakeUpstreamLog`` in
``tests/logfakes.py``, the same format source the log tests use.

It writes tiny ``epoch_N``/``latest``/``best_model`` checkpoints (.pdparams, .pdopt, .pdstates, in
upstream's order, .pdstates as a plain pickle of ``{"metric", "epoch"}``), resumes from
``Global.checkpoints`` and resets its best metric to 0 on resume, as upstream's ``init_model`` does.

Knobs (environment variables):
  FAKE_SLEEP=S          seconds of "training" per epoch (default 0.05)
  FAKE_CRASH_EPOCH=K    crash during epoch K ...
  FAKE_CRASH_RANK=R     ... on rank R (default 1)
  FAKE_HANG=1           ignore SIGTERM and hang at the start of the first epoch (forces a kill by PID)
  FAKE_CHILD=1          start a child process per rank (like a DataLoader worker)
  FAKE_TOP1=a,b,c       eval top-1 per epoch (default 0.1 * epoch, at most 1.0)
  FAKE_NAN_EPOCH=K      from epoch K on, train loss, eval loss and eval top-1/top-5 print as nan
                        (so, as upstream's ``acc >= best`` comparison does, no new best is saved)
  FAKE_SLOW_FROM=K      from epoch K on, the printed ips falls to a quarter (batch_cost x4);
                        the real time per epoch stays FAKE_SLEEP
"""

import argparse
import ast
import math
import os
import pickle
import signal
import subprocess
import sys
import time

import yaml

# The log format lives in logfakes.py: beside this file in a fake checkout (make_fake_checkout copies
# it to tools/), or one directory up when this file runs from tests/doubles/.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
from logfakes import FakeUpstreamLog  # noqa: E402

ITERS = 2  # train iterations per epoch
EVAL_ITERS = 2
IPS = 160.0


def str2num(text):
    """Upstream's rule for an ``-o`` value: ``eval`` it; keep the raw string if that raises."""
    try:
        return eval(text)
    except Exception:
        return text


def literal_strings(node):
    """Upstream's ``create_attr_dict``: string values of mappings go through ``ast.literal_eval``."""
    for key, value in node.items():
        if isinstance(value, dict):
            literal_strings(value)
        elif isinstance(value, str):
            try:
                node[key] = ast.literal_eval(value)
            except BaseException:
                pass


def override(node, keys, value):
    """Walk ``keys`` into dicts and lists (list items by index) and set the last one, creating keys."""
    assert isinstance(node, (list, dict)), f"{node} should be a list or a dict"
    assert keys, "length of keys should be larger than 0"
    if isinstance(node, list):
        index = str2num(keys[0])
        if len(keys) == 1:
            assert index < len(node), f"index({index}) out of range({node})"
            node[index] = str2num(value)
        else:
            override(node[index], keys[1:], value)
    elif len(keys) == 1:
        if keys[0] not in node:
            print(f"A new field ({keys[0]}) detected!", flush=True)
        node[keys[0]] = str2num(value)
    else:
        if keys[0] not in node:
            node[keys[0]] = {}
            print(f"A new Series field ({keys[0]}) detected!", flush=True)
        override(node[keys[0]], keys[1:], value)


def load_config(path, options):
    with open(path) as handle:
        config = yaml.safe_load(handle)
    literal_strings(config)
    for option in options:
        assert "=" in option, f"option({option}) should contain a = to distinguish between key and value"
        pair = option.split("=")
        assert len(pair) == 2, "there can be only a = in the option"
        key, value = pair
        override(config, key.split("."), value)
    return config


def env_int(name, default):
    return int(os.environ.get(name, default))


def main():
    parser = argparse.ArgumentParser("fake train script")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("-p", "--profiler_options", default=None)
    args = parser.parse_args()
    config = load_config(args.config, args.override)
    config["profiler_options"] = args.profiler_options
    g = config["Global"]
    rank = env_int("PADDLE_TRAINER_ID", "0")
    world = env_int("PADDLE_TRAINERS_NUM", "1")
    print(f"fake-train rank {rank} of {world} device {g['device']} seed {g.get('seed')}", flush=True)
    out = g["output_dir"]
    epochs = int(g["epochs"])
    fmt = FakeUpstreamLog(
        arch=config["Arch"]["name"],
        epochs=epochs,
        class_num=config["Arch"].get("class_num", 1000),
        iters=ITERS,
        eval_iters=EVAL_ITERS,
        print_batch_step=int(g.get("print_batch_step", 1)),
        lr0=float(config["Optimizer"]["lr"]["learning_rate"]),
        batch_size=int(config["DataLoader"]["Train"]["sampler"]["batch_size"]),
        output_dir=out,
        realtime=True,
    )
    log = None
    if rank == 0:
        os.makedirs(out, exist_ok=True)
        log = open(os.path.join(out, "train.log"), "a")

    def emit(*lines):
        """Rank 0's logger: stdout (the launcher's workerlog) and train.log; other ranks stay silent."""
        if log is None:
            return
        for line in lines:
            print(line, flush=True)
            log.write(line + "\n")
        log.flush()

    emit(*fmt.startup(config=config, device=g["device"], world_size=world))
    start, best = 1, -1.0
    if g.get("checkpoints"):
        state = load_state(g["checkpoints"] + ".pdstates", rank)
        start, best = int(state["epoch"]) + 1, 0.0  # upstream's init_model resets the metric to 0
        emit(fmt.load_line(g["checkpoints"]))
    start_together()
    if os.environ.get("FAKE_CHILD"):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", f"Global.output_dir={out}"])
    top1s = [float(x) for x in os.environ.get("FAKE_TOP1", "").split(",") if x]
    sleep = float(os.environ.get("FAKE_SLEEP", "0.05"))
    crash_epoch = env_int("FAKE_CRASH_EPOCH", "0")
    crash_rank = env_int("FAKE_CRASH_RANK", "1")
    nan_epoch = env_int("FAKE_NAN_EPOCH", "0")
    slow_from = env_int("FAKE_SLOW_FROM", "0")
    for epoch in range(start, epochs + 1):
        if os.environ.get("FAKE_HANG"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(1)
        broken = 0 < nan_epoch <= epoch
        loss = math.nan if broken else max(0.1, 2.5 - 0.2 * epoch)
        ips = IPS / 4 if 0 < slow_from <= epoch else IPS
        for it in range(ITERS):
            if it % fmt.print_batch_step == 0:
                emit(fmt.train_iter(epoch, it, loss=loss, ips=ips))
            time.sleep(sleep / ITERS)
            if epoch == crash_epoch and rank == crash_rank:
                print(f"fake-train rank {rank}: about to fail in epoch {epoch}", flush=True)
                raise RuntimeError(f"fake failure on rank {rank} in epoch {epoch}")
        emit(fmt.train_avg(epoch, loss=loss))
        top1 = top1s[epoch - 1] if epoch - 1 < len(top1s) else min(1.0, 0.1 * epoch)
        is_best = False
        if g.get("eval_during_train", True) and epoch % int(g.get("eval_interval", 1)) == 0:
            top5, eval_loss = (math.nan, math.nan) if broken else (1.0, 1.0)
            top1 = math.nan if broken else top1
            emit(*[fmt.eval_iter(epoch, it, top1, top5, eval_loss) for it in range(0, EVAL_ITERS, fmt.print_batch_step)])
            emit(fmt.eval_avg(epoch, top1, top5, eval_loss))
            if top1 >= best:
                best = top1
            emit(fmt.best_line(epoch, best))
            is_best = top1 >= best
        if rank != 0:
            continue

        def save(prefix):
            base = os.path.join(out, prefix)
            for suffix, payload in ((".pdparams", b"params"), (".pdopt", b"opt")):
                with open(base + suffix, "wb") as handle:
                    handle.write(payload + f" epoch {epoch}".encode())
                if prefix == "best_model" and suffix == ".pdparams":  # upstream's second copy of the weights
                    os.makedirs(base, exist_ok=True)
                    with open(os.path.join(base, "model.pdparams"), "wb") as handle:
                        handle.write(payload + f" epoch {epoch}".encode())
            with open(base + ".pdstates", "wb") as handle:
                pickle.dump({"metric": top1, "epoch": epoch}, handle)
            emit(fmt.save_line(prefix))

        if is_best:
            save("best_model")
        if int(g.get("save_interval", 1)) > 0 and epoch % int(g.get("save_interval", 1)) == 0:
            save(f"epoch_{epoch}")
        save("latest")


def start_together():
    """Real ranks meet in their first collective step, each having loaded its checkpoint, so no rank saves
    (and the harness prunes) a later epoch before all have read theirs. The double's ranks of one launch
    meet here instead, through files in FAKE_BARRIER_DIR (none set: they start as they come)."""
    folder, ranks = os.environ.get("FAKE_BARRIER_DIR"), env_int("PADDLE_LOCAL_SIZE", "1")
    if not folder or ranks < 2:
        return
    place = os.path.join(folder, f"launcher-{os.getppid()}")
    os.makedirs(place, exist_ok=True)
    open(os.path.join(place, f"rank{env_int('PADDLE_LOCAL_RANK', '0')}"), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(place)) < ranks and time.monotonic() < deadline:
        time.sleep(0.02)


def load_state(path, rank):
    """Real ranks meet in the first allreduce, so rank 0 never saves before every rank has loaded; the
    double has no collective, and a rank started late on a loaded machine can find rank 0 rewriting
    the file: it reads again (rank 0 reads once, so a truncated checkpoint still fails as upstream does)."""
    for _ in range(100 if rank else 1):
        try:
            with open(path, "rb") as handle:
                return pickle.load(handle)
        except (EOFError, pickle.UnpicklingError):
            if not rank:
                raise
            time.sleep(0.1)
    raise EOFError(f"{path} stayed empty")


if __name__ == "__main__":
    main()
