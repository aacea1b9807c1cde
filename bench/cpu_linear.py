#!/usr/bin/env python3
"""PyTorch CPU anchor for `cargo bench --bench ops` (linear_*): GFLOP/s of gelu(linear(x, W, b)) on the block
shapes of ViT-B/16 (M = 8 x 197) and DINOv2-S/14 (M = 8 x 257), fp32, with 1 and with --threads threads. Best of
--iters after one warm-up, counting 2·M·N·K FLOPs as cpeal's bench does. Prints one JSON object per case."""
import argparse
import json
import time

import torch
import torch.nn.functional as F

MODELS = {"vit_b16": (197, 768, 3072), "dinov2_s14": (257, 384, 1536)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    a = p.parse_args()
    torch.manual_seed(0)
    with torch.inference_mode():
        for model, (tokens, d, f) in MODELS.items():
            m = 8 * tokens
            for name, n, k in [("qkv", 3 * d, d), ("out", d, d), ("fc1", f, d), ("fc2", d, f)]:
                x, w, b = torch.randn(m, k), torch.randn(n, k) * k**-0.5, torch.randn(n)
                for threads in sorted({1, a.threads}, reverse=True):
                    torch.set_num_threads(threads)
                    F.gelu(F.linear(x, w, b))
                    best = float("inf")
                    for _ in range(a.iters):
                        t = time.perf_counter()
                        F.gelu(F.linear(x, w, b))
                        best = min(best, time.perf_counter() - t)
                    print(json.dumps({"case": f"linear_{model}/{name}_{n}x{k}_t{threads}", "torch": torch.__version__,
                                      "gflops": round(2 * m * n * k / best / 1e9, 1)}))


if __name__ == "__main__":
    main()
