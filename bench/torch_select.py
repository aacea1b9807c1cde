#!/usr/bin/env python3
"""PyTorch eager beside cpeal's selection rows on the same GPU in the same run (the anchor of the selection
table of `cpeal bench-kernels`): over [rows, 1000] logits in f32 and bf16, the entropy of the softmax, the top
k of those scores by torch.topk with the indices downloaded (as cpeal's top-k downloads its k rows) for each k
cpeal timed, the k-th score alone (torch.topk's last value), and scores + top-1000 in a row. PyTorch computes the entropy only; cpeal's kernel writes entropy,
least confidence and margin.

    python3 bench/torch_select.py <bench-kernels output>      (prints a markdown table)
"""
import re
import sys

def our_rows(text):
    """{(step, dtype): (shape, us)} from bench-kernels' selection table, over 1000 classes: `scores` is the
    `uncertainty_scores_<dtype>` row, `top-<k>` the top-k rows after it, `kth-<k>` the k-th score rows,
    `scores + top-1000` the end-to-end row."""
    rows, dtype = {}, None
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 5:
            continue
        label, shape = cells[1], cells[2]
        try:
            us = float(cells[3])
        except ValueError:
            continue
        scores = re.fullmatch(r"uncertainty_scores_(f32|bf16)", label)
        both = re.fullmatch(r"scores \+ top-1000 \((f32|bf16)\)", label)
        top = re.fullmatch(r"top-(\d+) \(.*\)", label)
        kth = re.fullmatch(r"k-th score of top-(\d+) \(.*\)", label)
        if scores:
            dtype = scores.group(1) if shape.endswith(" x 1000") else None
            if dtype:
                rows[("scores", dtype)] = (shape, us)
        elif top and dtype:
            rows[(f"top-{top.group(1)}", dtype)] = (shape, us)
        elif kth and dtype:
            rows[(f"kth-{kth.group(1)}", dtype)] = (shape, us)
        elif both:
            rows[("scores + top-1000", both.group(1))] = (shape, us)
    return rows


def main():
    import torch

    from torch_timing import median_ms

    ours = our_rows(open(sys.argv[1]).read())
    if ("scores", "f32") not in ours:
        print("(no selection rows over 1000 classes in the bench-kernels output)")
        return
    rows = int(ours[("scores", "f32")][0].split(" x ")[0])
    print(f"\n| selection over {rows} x 1000 logits | cpeal (us) | PyTorch eager (us) | cpeal speed / PyTorch |")
    print("|---|---|---|---|")
    for dtype, name in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
        x = (torch.randn(rows, 1000, device="cuda") * 2).to(dtype)

        def entropy():
            lp = torch.log_softmax(x.float(), -1)
            return -(lp.exp() * lp).sum(-1)

        h = entropy()
        for step in sorted((s for s, d in ours if d == name), key=lambda s: (s.startswith("scores +"), len(s), s)):
            if step == "scores":
                ms = median_ms(entropy, 10)
            elif step.startswith("top-"):
                ms = median_ms(lambda: torch.topk(h, int(step[4:])).indices.cpu(), 20)
            elif step.startswith("kth-"):
                ms = median_ms(lambda: torch.topk(h, int(step[4:])).values[-1].item(), 20)
            else:
                ms = median_ms(lambda: torch.topk(entropy(), 1000).indices.cpu(), 10)
            us = ours[(step, name)][1]
            print(f"| {step} ({name}) | {us:.1f} | {ms * 1e3:.1f} | {ms * 1e3 / us:.2f} |")
        del x, h
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
