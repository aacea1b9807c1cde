#!/usr/bin/env python3
"""Writes tests/fixtures/hf-tiny/dinov2_registers: a tiny random Dinov2WithRegistersModel (transformers), an input
whose patch grid (3 x 5) differs from the checkpoint's (4 x 4) so the position embeddings are resampled with
antialiased bicubic interpolation (down in height, up in width), and the float64 outputs."""
import json
import pathlib

import torch
from safetensors.torch import save_file
from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel, __version__

out = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/hf-tiny/dinov2_registers"
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
cfg = Dinov2WithRegistersConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3, mlp_ratio=2,
                                image_size=32, patch_size=8, num_register_tokens=2, layerscale_value=0.5)
model = Dinov2WithRegistersModel(cfg).eval()
with torch.no_grad():  # the tokens start at zero: make them count
    for p in (model.embeddings.cls_token, model.embeddings.register_tokens, model.embeddings.mask_token):
        p.normal_(0.0, 0.5)
model.save_pretrained(out, safe_serialization=True)
pixels = torch.randn(2, 3, 24, 40)
save_file({"pixel_values": pixels.contiguous()}, out / "inputs.safetensors")
with torch.no_grad():
    o = model.double()(pixel_values=pixels.double())
expected = {"last_hidden_state": o.last_hidden_state.float().contiguous(), "pooler_output": o.pooler_output.float().contiguous()}
save_file(expected, out / "expected.safetensors")
(out / "FIXTURE.json").write_text(json.dumps({
    "reference": f"HF transformers {__version__}, float64 forward",
    "note": "Dinov2WithRegistersModel, 2 register tokens; input 24x40 (grid 3x5) vs checkpoint grid 4x4: "
            "antialiased bicubic resampling of the position embeddings",
    "outputs": {k: list(v.shape) for k, v in expected.items()},
}, indent=1))
print({k: tuple(v.shape) for k, v in expected.items()})
