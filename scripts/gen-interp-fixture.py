#!/usr/bin/env python3
"""Write tests/fixtures/gpu/interp_bicubic.json: PyTorch's bicubic interpolation (align_corners=False, with and
without antialias; by size and by scale_factor) on small random grids, the oracle of the Rust reference
`cpeal::gpu::reference::interp_bicubic`. Needs torch (CPU is enough). Run from the repository root."""
import json

import torch
import torch.nn.functional as F

torch.manual_seed(0)
cases = []
# (hi, wi, d, size or None, scale_factor or None, antialias)
for hi, wi, d, size, sf, aa in [
    (4, 4, 3, (7, 6), None, False),
    (8, 8, 2, (5, 3), None, False),
    (9, 7, 2, (4, 3), None, True),
    (4, 4, 3, (6, 9), None, True),
    (5, 5, 2, None, (1.3, 0.7), True),
    (6, 4, 2, None, (0.6, 1.75), False),
]:
    x = torch.randn(1, d, hi, wi, dtype=torch.float64)
    y = F.interpolate(x, size=size, scale_factor=sf, mode="bicubic", align_corners=False, antialias=aa)
    ho, wo = y.shape[2], y.shape[3]
    scale = (hi / ho, wi / wo) if sf is None else (1.0 / sf[0], 1.0 / sf[1])
    cases.append({
        "hi": hi, "wi": wi, "d": d, "ho": ho, "wo": wo, "scale_h": scale[0], "scale_w": scale[1],
        "antialias": aa,
        "x": x[0].permute(1, 2, 0).flatten().tolist(),  # [hi, wi, d] channels-last
        "y": y[0].permute(1, 2, 0).flatten().tolist(),
    })
with open("tests/fixtures/gpu/interp_bicubic.json", "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f)
print(f"wrote {len(cases)} cases")
