#!/usr/bin/env python3
"""The quality experiments of docs/results.md: job files derived from examples/encoder-mnist.toml, each run
with `shoal local`, then the test accuracy at chosen rounds printed per job.

Every job inherits the example's settings, so jobs that name no head settings run with the defaults of
the build (since session 5: head_init = "common", head_warmup = 0).

Usage: python3 benches/compare/fed_experiments.py [NAME ...]   (default: every job below; about 40 min here)
Needs a release build (`cargo build --release`) and the fetched data (`shoal data fetch`).
"""
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOAL = os.environ.get("SHOAL_BIN", os.path.join(ROOT, "target", "release", "shoal"))
WORK = os.path.join(ROOT, "target", "fed-experiments")
BASE = open(os.path.join(ROOT, "examples", "encoder-mnist.toml")).read()


def job(name, rounds, rule=None, options=None, attack=False, partition=None, local_epochs=None, batch=None,
        lr=None, every=None, share_head=False, head_warmup=None, head_init=None):
    """The demo's job file with the given settings changed."""
    s = BASE.replace('job = "encoder-mnist"', f'job = "{name}"')
    s = re.sub(r"rounds = 60 .*", f"rounds = {rounds}", s)
    if rule:
        s = re.sub(r'name = "fedavg" .*', f'name = "{rule}"', s)
    if options:
        s = s.replace("# options = { f = 2 }", f"options = {options}")
    if partition:
        s = re.sub(r'partition = "iid" .*', f'partition = "{partition}"', s)
    if local_epochs is not None:
        s = re.sub(r"local_epochs = 5 .*", f"local_epochs = {local_epochs}", s)
    if batch is not None:
        s = re.sub(r"batch = 10 .*", f"batch = {batch}", s)
    if lr is not None:
        s = re.sub(r"lr = 0.1\n", f"lr = {lr}\n", s)
    if every is not None:
        s = re.sub(r"every = 1 .*", f"every = {every}", s)
    if share_head:
        s = s.replace('activation = "relu"\n', 'activation = "relu"\nshare_head = true\n')
    if head_init:
        s = s.replace('activation = "relu"\n', f'activation = "relu"\nhead_init = "{head_init}"\n')
    if head_warmup is not None:
        s = re.sub(r"head_warmup = \d+ .*", f"head_warmup = {head_warmup}", s)
    s = s.replace('endpoint = "inproc://shoal-encoder-mnist"', f'endpoint = "inproc://shoal-{name}"')
    if attack:
        s += "\n[attack]\nfraction = 0.2\nsigma = 1.0\n"
    return name, s, rounds


JOBS = [
    # Under attack, and each rule's clean baseline (60 rounds, evaluation every 10).
    job("clean-fedavg", 60, every=10),
    job("clean-median", 60, rule="median", every=10),
    job("clean-trim02", 60, rule="trimmed-mean", options="{ beta = 0.2 }", every=10),
    job("clean-trim03", 60, rule="trimmed-mean", options="{ beta = 0.3 }", every=10),
    job("clean-krum3", 60, rule="krum", options="{ f = 3 }", every=10),
    job("atk-mean", 60, rule="mean", attack=True, every=10),
    job("atk-median", 60, rule="median", attack=True, every=10),
    job("atk-trim02", 60, rule="trimmed-mean", options="{ beta = 0.2 }", attack=True, every=10),
    job("atk-trim03", 60, rule="trimmed-mean", options="{ beta = 0.3 }", attack=True, every=10),
    job("atk-krum3", 60, rule="krum", options="{ f = 3 }", attack=True, every=10),
    # Multi-Krum (Blanchard et al.'s variant: average the m best-scored updates, here m = n - f = 7).
    job("clean-mkrum", 60, rule="multi-krum", options="{ f = 3, m = 7 }", every=10),
    job("atk-mkrum", 60, rule="multi-krum", options="{ f = 3, m = 7 }", attack=True, every=10),
    # Krum keeps one update per round: how far behind is it after longer runs?
    job("clean-fedavg150", 150, every=10),
    job("clean-krum150", 150, rule="krum", options="{ f = 3 }", every=10),
    job("atk-krum150", 150, rule="krum", options="{ f = 3 }", attack=True, every=10),
    # The pathological non-IID split, longer.
    job("noniid300", 300, partition="shards", every=5),
    job("noniid-lr005", 300, partition="shards", every=5, lr=0.05),
    job("noniid-e1", 300, partition="shards", every=5, local_epochs=1),
    # Private heads that start each round from the same values for every child (head_init = "common", the
    # default since session 5, stated here as in session 4), and the old default for comparison.
    job("noniid-common", 500, partition="shards", every=5, head_warmup=0, head_init="common"),
    job("iid-common", 60, every=10, head_warmup=0, head_init="common"),
    job("iid-child", 60, every=10, head_warmup=1, head_init="child"),
    job("noniid-child", 300, partition="shards", every=5, head_warmup=1, head_init="child"),
    job("noniid-avgm", 300, partition="shards", rule="fedavgm", options="{ lr = 1.0, beta = 0.9 }", every=5),
    # The whole 2NN federated, head included (McMahan et al.'s setting), on the pathological split.
    job("noniid-shared", 700, partition="shards", every=10, share_head=True, head_warmup=0),
    # FedSGD: one full-batch step per round.
    job("fedsgd-lr05", 500, local_epochs=1, batch=0, lr=0.5, every=10),
    job("fedsgd-lr01", 500, local_epochs=1, batch=0, lr=0.1, every=10),
    job("fedsgd-shared", 500, local_epochs=1, batch=0, lr=0.5, every=10, share_head=True, head_warmup=0),
    job("iid-shared", 60, every=10, share_head=True, head_warmup=0),
]


def main():
    wanted = set(sys.argv[1:])
    os.makedirs(WORK, exist_ok=True)
    for name, text, rounds in JOBS:
        if wanted and name not in wanted:
            continue
        path = os.path.join(WORK, f"{name}.toml")
        with open(path, "w") as f:
            f.write(text)
        # A job restarts from its store when one is there: start every experiment from scratch.
        shutil.rmtree(os.path.join(WORK, name), ignore_errors=True)
        out = subprocess.run([SHOAL, "local", path, "--quiet", "--output", os.path.join(WORK, name)],
                             check=True, capture_output=True, text=True).stdout
        acc = dict(re.findall(r"round +(\d+): accuracy ([0-9.]+%)", out))
        marks = [r for r in (10, 30, 50, 60, 100, 150, 200, 300, 500, 700) if r <= rounds and str(r) in acc]
        fitted = re.search(r"fitted: accuracy ([0-9.]+%)", out)
        print(f"{name:<14} " + "  ".join(f"r{r} {acc[str(r)]}" for r in marks)
              + (f"  | fitted head {fitted.group(1)}" if fitted else ""), flush=True)


if __name__ == "__main__":
    main()
