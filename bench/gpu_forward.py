#!/usr/bin/env python3
"""PyTorch eager anchor for `cpeal bench forward --device cuda`: images/s of transformers' ViTModel (ViT-B/16),
CLIPVisionModelWithProjection (CLIP ViT-B/16 image tower) and Dinov2Model (DINOv2-S/14), random weights, bf16,
SDPA attention, 224 px, CUDA-synchronised median of --iters. One JSON object per (model, batch)."""
import argparse
import json
import time

import torch
from transformers import (CLIPVisionConfig, CLIPVisionModelWithProjection, Dinov2Config, Dinov2Model, ViTConfig,
                          ViTModel)

MODELS = {
    "vit-b16": lambda: ViTModel(ViTConfig(attn_implementation="sdpa"), add_pooling_layer=True),
    "clip-b16-vision": lambda: CLIPVisionModelWithProjection(
        CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                         patch_size=16, image_size=224, projection_dim=512, attn_implementation="sdpa")),
    "dinov2-s14": lambda: Dinov2Model(Dinov2Config(hidden_size=384, num_attention_heads=6, image_size=518,
                                                   patch_size=14, attn_implementation="sdpa")),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", choices=MODELS, required=True)
    p.add_argument("--batch-sizes", default="1,8,64,256,512")
    p.add_argument("--iters", type=int, default=10)
    a = p.parse_args()
    model = MODELS[a.arch]().to("cuda", torch.bfloat16).eval()
    for bs in map(int, a.batch_sizes.split(",")):
        x = torch.randn(bs, 3, 224, 224, device="cuda", dtype=torch.bfloat16)
        with torch.inference_mode():
            model(pixel_values=x)
            torch.cuda.synchronize()
            times = []
            for _ in range(a.iters):
                t = time.perf_counter()
                model(pixel_values=x)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
        times.sort()
        median = times[len(times) // 2]
        print(json.dumps({"arch": a.arch, "batch": bs, "images_per_s": round(bs / median, 1), "median_s": median}))


if __name__ == "__main__":
    main()
