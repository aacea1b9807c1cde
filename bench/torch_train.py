#!/usr/bin/env python3
"""PyTorch anchor for `cpeal bench train`: seconds per training step of LoRA (r on query/key/value of every
block, α = r, scale α/√r) plus a classification head on transformers' ViTForImageClassification (ViT-B/16) or
Dinov2ForImageClassification (DINOv2-S/14), random weights, f32, eager, with the same loss (CE + the
calibration term, λ = 1, inter weighting) and SGD with momentum. peft is used when installed, else an
equivalent hand-written LoRA; the JSON says which. One JSON object on stdout."""
import argparse
import json
import math
import time

import torch
from torch import nn


def calibration_loss(logits, labels):
    """CE + L_UC exactly as cpeal's ops::loss (and the paper's reference code)."""
    p = logits.softmax(-1)
    u = -(p * torch.log(p + 1e-6)).sum(-1)
    correct = logits.argmax(-1) == labels
    b = logits.shape[0]
    zero = logits.new_zeros(())
    l_cor = (-torch.log(1 - torch.tanh(u[correct]) + 1e-6)).mean() if correct.any() else zero
    l_inc = (-torch.log(torch.tanh(u[~correct]) + 1e-6)).mean() if (~correct).any() else zero
    n_c, n_i = correct.sum(), (~correct).sum()
    l_uc = torch.clamp(n_i / b * l_cor + n_c / b * l_inc, max=5.0)
    return nn.functional.cross_entropy(logits, labels) + l_uc


class Lora(nn.Module):
    def __init__(self, base, r):
        super().__init__()
        self.base, self.scale = base, r / math.sqrt(r)
        self.a = nn.Parameter(torch.empty(r, base.in_features))
        self.b = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))

    def forward(self, x):
        return self.base(x) + self.scale * (x @ self.a.t()) @ self.b.t()


def model_for(arch, classes, r):
    from transformers import Dinov2Config, Dinov2ForImageClassification, ViTConfig, ViTForImageClassification
    if arch == "vit-b16":
        model = ViTForImageClassification(ViTConfig(num_labels=classes))
    else:
        model = Dinov2ForImageClassification(Dinov2Config(hidden_size=384, num_attention_heads=6, num_labels=classes))
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.split(".")[-1] in
             ("query", "key", "value", "q_proj", "k_proj", "v_proj")]
    targets = sorted({n.split(".")[-1] for n in names})
    try:
        from peft import LoraConfig, get_peft_model
        cfg = LoraConfig(r=r, lora_alpha=r, use_rslora=True, target_modules=targets, modules_to_save=["classifier"])
        return get_peft_model(model, cfg), "peft"
    except ImportError:
        for p in model.parameters():
            p.requires_grad_(False)
        for n in names:
            parent, leaf = model.get_submodule(n.rsplit(".", 1)[0]), n.rsplit(".", 1)[1]
            setattr(parent, leaf, Lora(getattr(parent, leaf), r))
        for p in model.classifier.parameters():
            p.requires_grad_(True)
        return model, "hand-written LoRA"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=["vit-b16", "dinov2-s14"], default="vit-b16")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lora-r", type=int, default=4)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model, lora = model_for(a.arch, a.classes, a.lora_r)
    model = model.to(a.device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    x = torch.randn(a.batch_size, 3, 224, 224, device=a.device)
    y = torch.arange(a.batch_size, device=a.device) % a.classes
    times = []
    for i in range(a.warmup + a.iters):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        calibration_loss(model(pixel_values=x).logits, y).backward()
        opt.step()
        if a.device != "cpu":
            torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    step = sorted(times)[len(times) // 2]
    print(json.dumps({"arch": a.arch, "batch": a.batch_size, "lora_r": a.lora_r, "threads": torch.get_num_threads(),
                      "device": a.device, "lora": lora, "torch": torch.__version__, "step_s": round(step, 4),
                      "images_per_s": round(a.batch_size / step, 3)}))


if __name__ == "__main__":
    main()
