#!/usr/bin/env python3
"""Regenerates tests/fixtures/preprocess/: a few deterministic images and what the transformers image
processors (PIL backend) make of them, for `tests/preprocess_reference.rs`.

Needs numpy, Pillow and transformers (no torch). Usage: python3 scripts/check-preprocess.py [OUT_DIR]
Each processor's `preprocessor_config.json` is written with `save_pretrained`, so the Rust side also reads
the files exactly as transformers writes them.
"""
import json
import pathlib
import sys

import numpy as np
from PIL import Image
from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def images(rng):
    """name -> PIL image; PNG keeps pixels exact, the JPEG checks decoder agreement."""
    yy, xx = np.mgrid[0:45, 0:61]
    smooth = np.stack([(xx * 4) % 256, (yy * 5) % 256, ((xx + yy) * 3) % 256], -1).astype(np.uint8)
    rgba = rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)
    return {
        "noise_rgb_61x45.png": Image.fromarray(rng.integers(0, 256, (45, 61, 3), dtype=np.uint8), "RGB"),
        "noise_gray_45x61.png": Image.fromarray(rng.integers(0, 256, (61, 45), dtype=np.uint8), "L"),
        "noise_rgba_50x40.png": Image.fromarray(rgba, "RGBA"),
        "upscale_rgb_13x9.png": Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8), "RGB"),
        "smooth_rgb_61x45.jpg": Image.fromarray(smooth, "RGB"),
    }


def processors():
    return {
        "clip": CLIPImageProcessorPil(size={"shortest_edge": 24}, crop_size={"height": 24, "width": 24}),
        "vit": ViTImageProcessorPil(size={"height": 20, "width": 20}, do_convert_rgb=True),
        "dinov2": BitImageProcessorPil(
            size={"shortest_edge": 28},
            crop_size={"height": 24, "width": 24},
            resample=3,
            do_convert_rgb=True,
            image_mean=IMAGENET_MEAN,
            image_std=IMAGENET_STD,
        ),
    }


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/preprocess")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261125)
    imgs = images(rng)
    for name, img in imgs.items():
        img.save(out / name, quality=90) if name.endswith(".jpg") else img.save(out / name)
    cases, values = [], []
    for model_type, proc in processors().items():
        proc.save_pretrained(out / model_type)
        for name in imgs:
            # reopen from disk so the JPEG is judged on decoded pixels, as cpeal sees it
            pixels = proc(Image.open(out / name), return_tensors="np")["pixel_values"][0]
            cases.append({
                "model_type": model_type,
                "image": name,
                "shape": list(pixels.shape),
                "pixel_values": "@VALUES%d@" % len(cases),
            })
            values.append(pixels.astype(np.float32).ravel())
    meta = {"reference": f"transformers {__import__('transformers').__version__} PIL-backend image processors, "
                         f"Pillow {Image.__version__}", "cases": cases}
    text = json.dumps(meta)
    for i, v in enumerate(values):
        # shortest decimal that round-trips the float32 value
        numbers = ",".join(np.format_float_positional(x, unique=True, trim="-") for x in v)
        text = text.replace(f'"@VALUES{i}@"', f"[{numbers}]")
    (out / "expected.json").write_text(text)
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
