#!/usr/bin/env python3
"""PyTorch CPU fp32 anchor for `cpeal bench forward`: images/s of transformers' ViTModel (ViT-B/16) and
Dinov2Model (DINOv2-S/14) with random weights at 224 px, same batch, same thread count, median of --iters.
Prints one JSON object per model."""
import argparse
import json
import time

import torch
from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTModel

CONFIGS = {
    "vit-b16": lambda: ViTModel(ViTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                          intermediate_size=3072, patch_size=16, image_size=224)),
    "dinov2-s14": lambda: Dinov2Model(Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                                   mlp_ratio=4, patch_size=14, image_size=518)),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", choices=CONFIGS, required=True)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = CONFIGS[a.arch]().eval()
    x = torch.randn(a.batch_size, 3, 224, 224)
    times = []
    with torch.inference_mode():
        model(pixel_values=x)
        for _ in range(a.iters):
            t = time.perf_counter()
            model(pixel_values=x)
            times.append(time.perf_counter() - t)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({"arch": a.arch, "torch": torch.__version__, "threads": a.threads, "batch": a.batch_size,
                      "median_s": round(median, 4), "images_per_s": round(a.batch_size / median, 3)}))


if __name__ == "__main__":
    main()
