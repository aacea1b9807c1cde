"""Python side of the selection benchmark: one method per process (so /usr/bin/time sees its own peak RSS).

usage: py_bench.py METHOD DATA_DIR K [C] OUT
  skal-coreset   scikit-activeml CoreSet on features.npy
  skal-badge     scikit-activeml Badge on features.npy with softmax(logits_c{C}.npy)
  np-coreset     plain NumPy k-center greedy (float64 GEMV per pick; first centre from $FIRST or 0)
  np-badge       plain NumPy BADGE: dense float32 gradient embeddings + k-means++ D^2 sampling
  np-entropy     plain NumPy chunked entropy top-K over logits_1m.npy
Writes the chosen indices to OUT, one per line.
"""
import os
import sys

import numpy as np


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def skal_coreset(data, k, _c):
    from skactiveml.pool import CoreSet
    x = np.load(f"{data}/features.npy", mmap_mode="r")
    y = np.full(len(x), np.nan)
    return CoreSet(random_state=0).query(np.asarray(x), y, batch_size=k)


def skal_badge(data, k, c):
    from skactiveml.base import SkactivemlClassifier
    from skactiveml.pool import Badge

    probs = softmax(np.load(f"{data}/logits_c{c}.npy").astype(np.float64))

    class FixedProba(SkactivemlClassifier):
        """The pool's precomputed probabilities (the benchmark times selection, not a model)."""

        def fit(self, X, y, sample_weight=None):
            return self

        def predict_proba(self, X):
            return probs[: len(X)]

    x = np.asarray(np.load(f"{data}/features.npy", mmap_mode="r"))
    y = np.full(len(x), np.nan)
    clf = FixedProba(classes=np.arange(c), missing_label=np.nan)
    return Badge(random_state=0).query(x, y, clf, fit_clf=False, batch_size=k)


def np_coreset(data, k, _c):
    x = np.load(f"{data}/features.npy").astype(np.float64)
    norms = np.einsum("ij,ij->i", x, x)
    first = int(os.environ.get("FIRST", "0"))
    min_d2 = np.full(len(x), np.inf)
    order = [first]
    for _ in range(k - 1):
        c = x[order[-1]]
        d2 = norms - 2.0 * (x @ c) + c @ c
        np.minimum(min_d2, d2, out=min_d2)
        min_d2[order] = -1.0
        order.append(int(np.argmax(min_d2)))
    return np.array(order)


def np_badge(data, k, c):
    h = np.load(f"{data}/features.npy")
    p = softmax(np.load(f"{data}/logits_c{c}.npy")).astype(np.float32)
    q = p.copy()
    q[np.arange(len(q)), p.argmax(1)] -= 1.0
    g = (q[:, :, None] * h[:, None, :]).reshape(len(h), -1)  # dense N x C*D
    del h
    norms = np.einsum("ij,ij->i", g, g)
    rng = np.random.default_rng(0)
    order = [int(np.argmax(norms))]
    d2 = np.full(len(g), np.inf)
    for _ in range(k - 1):
        c_ = g[order[-1]]
        np.minimum(d2, np.maximum(norms - 2.0 * (g @ c_) + c_ @ c_, 0.0), out=d2)
        d2[order] = 0.0
        order.append(int(rng.choice(len(g), p=d2 / d2.sum())))
    return np.array(order)


def np_entropy(data, k, _c):
    z = np.load(f"{data}/logits_1m.npy", mmap_mode="r")
    best_s, best_i = np.empty(0), np.empty(0, dtype=np.int64)
    for start in range(0, len(z), 20_000):
        p = softmax(np.asarray(z[start:start + 20_000]))
        s = -(p * np.log(np.maximum(p, 1e-30))).sum(1)
        top = np.argpartition(-s, k)[:k] if len(s) > k else np.arange(len(s))
        best_s = np.concatenate([best_s, s[top]])
        best_i = np.concatenate([best_i, top + start])
        keep = np.argpartition(-best_s, k)[:k] if len(best_s) > k else np.arange(len(best_s))
        best_s, best_i = best_s[keep], best_i[keep]
    order = np.lexsort((best_i, -best_s))
    return best_i[order]


METHODS = {
    "skal-coreset": skal_coreset,
    "skal-badge": skal_badge,
    "np-coreset": np_coreset,
    "np-badge": np_badge,
    "np-entropy": np_entropy,
}

if __name__ == "__main__":
    method, data, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    c = int(sys.argv[4]) if len(sys.argv) > 5 else 0
    out = sys.argv[-1]
    chosen = METHODS[method](data, k, c)
    np.savetxt(out, np.asarray(chosen, dtype=np.int64), fmt="%d")
