#!/usr/bin/env python3
"""Where PyTorch eager's time goes in one forward (the anchor of `bench/gpu_forward.py`): the CUDA kernels
torch.profiler records over a few forwards, per forward, as a markdown table beside cpeal's CPEAL_PROFILE
table. cuBLAS's kernel names carry its tile choice for each GEMM shape, and the attention kernel's name says
which SDPA backend ran."""
import argparse


def kernel_rows(prof, forwards):
    """(name, calls, device ms) per CUDA kernel, per forward, longest first."""
    rows = []
    for e in prof.key_averages():
        if not str(e.device_type).endswith("CUDA"):
            continue
        total_us = getattr(e, "self_device_time_total", None)
        if total_us is None:
            total_us = e.self_cuda_time_total
        rows.append((e.key, e.count / forwards, total_us / 1e3 / forwards))
    return sorted(rows, key=lambda r: -r[2])


def main():
    import torch  # here, so that kernel_rows can be tested where PyTorch is not installed
    from torch.profiler import ProfilerActivity, profile

    from gpu_forward import MODELS

    p = argparse.ArgumentParser()
    p.add_argument("--arch", choices=MODELS, default="vit-b16")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--forwards", type=int, default=3)
    p.add_argument("--rows", type=int, default=25)
    a = p.parse_args()
    model = MODELS[a.arch]().to("cuda", torch.bfloat16).eval()
    x = torch.randn(a.batch, 3, 224, 224, device="cuda", dtype=torch.bfloat16)
    with torch.inference_mode():
        for _ in range(2):
            model(pixel_values=x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(a.forwards):
                model(pixel_values=x)
            torch.cuda.synchronize()
    rows = kernel_rows(prof, a.forwards)
    total = sum(r[2] for r in rows)
    print(f"PyTorch eager {a.arch}, batch {a.batch}: {total:.2f} ms on the device a forward (torch.profiler)\n")
    print("| kernel | calls | ms | share |")
    print("|---|---|---|---|")
    for name, calls, ms in rows[: a.rows]:
        print(f"| {name} | {calls:g} | {ms:.3f} | {ms / total:.1%} |")
    if len(rows) > a.rows:
        rest = sum(r[2] for r in rows[a.rows:])
        print(f"| ({len(rows) - a.rows} more kernels) | | {rest:.3f} | {rest / total:.1%} |")


if __name__ == "__main__":
    main()
