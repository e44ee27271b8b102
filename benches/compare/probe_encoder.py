#!/usr/bin/env python3
"""How good can a head on a generated MNIST encoder get? Fits a softmax head to convergence (L-BFGS) on the
frozen encoder's features, once on the 10k validation split (what the job's master holds) and once on the
50k training split (which no federated master holds: an upper bound for any head), and prints test accuracy.

Usage: benches/compare/probe_encoder.py RUN_DIR [RUN_DIR ...]   (a job's output directory, with encoder-npy/)
Needs numpy and torch (the bench environment of run.sh) and the fetched data (`shoal data fetch`).
"""
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "data", "mnist")


def split(name):
    """One split of the converted IDX files: pixels scaled to [0, 1] as the job does, and labels."""
    x = np.fromfile(os.path.join(DATA, f"{name}-images.idx"), dtype=np.uint8, offset=16)
    y = np.fromfile(os.path.join(DATA, f"{name}-labels.idx"), dtype=np.uint8, offset=8)
    return x.reshape(-1, 784).astype(np.float32) / 255.0, torch.tensor(y.astype(np.int64))


def encoder(run):
    """The exported encoder as a function of a batch of rows (ReLU after every layer, as the job trains it)."""
    npy = os.path.join(run, "encoder-npy")
    layers = []
    while os.path.exists(os.path.join(npy, f"encoder.{len(layers)}.weight.npy")):
        i = len(layers)
        layers.append((np.load(os.path.join(npy, f"encoder.{i}.weight.npy")),
                       np.load(os.path.join(npy, f"encoder.{i}.bias.npy"))))
    if not layers:
        sys.exit(f"{run}: no encoder-npy/encoder.0.weight.npy (not a job's output directory?)")

    def features(x):
        for w, b in layers:
            x = np.maximum(x @ w + b, 0.0)
        return torch.tensor(x)
    return features


def fit_head(features, labels):
    torch.manual_seed(0)
    head = torch.nn.Linear(features.shape[1], 10)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=500, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(features), labels) + 1e-4 * (head.weight ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return head


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    train, val, test = split("train"), split("val"), split("test")
    for run in sys.argv[1:]:
        enc = encoder(run)
        test_features = enc(test[0])
        results = []
        for name, (x, y) in (("val 10k", val), ("train 50k", train)):
            head = fit_head(enc(x), y)
            with torch.no_grad():
                acc = (head(test_features).argmax(1) == test[1]).float().mean().item()
            results.append(f"head fit on {name}: {acc * 100:.2f}%")
        print(f"{os.path.basename(run.rstrip('/')):<16} " + "   ".join(results), flush=True)


if __name__ == "__main__":
    main()
