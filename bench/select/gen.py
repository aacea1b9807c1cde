"""Generate the selection benchmark inputs (once; files are reused when present).

features.npy      [100000, 768] f32: 100 class clusters + noise (like class-separated embeddings)
gauss.npy         [100000, 768] f32: i.i.d. Gaussian (no structure: the worst case for pruning)
logits_c10.npy    [100000, 10]  f32, logits_c100.npy [100000, 100] f32: correlated with the clusters
logits_1m.npy     [1000000, 1000] f32 (4 GB) for the entropy top-K throughput case
"""
import os
import sys

import numpy as np

N, D, K_CLUSTERS = 100_000, 768, 100


def save(path, make):
    if os.path.exists(path):
        return
    np.save(path + ".tmp.npy", make())
    os.replace(path + ".tmp.npy", path)


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    cluster = rng.integers(0, K_CLUSTERS, size=N)
    centres = rng.standard_normal((K_CLUSTERS, D), dtype=np.float32)

    def features():
        x = rng.standard_normal((N, D), dtype=np.float32) * np.float32(0.35)
        x += centres[cluster]
        return x

    save(f"{out}/features.npy", features)
    save(f"{out}/gauss.npy", lambda: rng.standard_normal((N, D), dtype=np.float32))
    for c in (10, 100):
        def logits(c=c):
            z = rng.standard_normal((N, c), dtype=np.float32)
            z[np.arange(N), cluster % c] += np.float32(3.0)
            return z
        save(f"{out}/logits_c{c}.npy", logits)
    path = f"{out}/logits_1m.npy"
    if not os.path.exists(path):
        big = np.lib.format.open_memmap(path + ".tmp.npy", mode="w+", dtype=np.float32, shape=(1_000_000, 1000))
        for start in range(0, 1_000_000, 50_000):
            big[start:start + 50_000] = rng.standard_normal((50_000, 1000), dtype=np.float32) * np.float32(2.0)
        big.flush()
        del big
        os.replace(path + ".tmp.npy", path)


if __name__ == "__main__":
    main(sys.argv[1])
