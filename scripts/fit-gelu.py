#!/usr/bin/env python3
"""Fits the polynomial behind `gelu_erf` in kernels/common.cuh (needs numpy and scipy; maintainers only).

GELU(x) = 0.5·x·(x >= 0 ? 2 - c : c) with c = erfc(|x|/√2) = 2^h(|x|). h is smooth on [0, U], U = 4√2 (beyond,
c < 2e-8 and u is clamped to U), so one polynomial P ≈ h and one ex2 give c: a single special-function op per
element where a rational erf approximation needs two (a reciprocal and an exponential).

The fit minimises the largest absolute error of c (Lawson's iteration on least squares weighted by c, since
h's error ε moves c by c·ε·ln 2), then evaluates the f32-rounded coefficients by Horner in f32 as the kernel
does. Prints the coefficients (lowest degree first) and the errors of c and of GELU.
    scripts/fit-gelu.py [degree]   (default 7)
"""
import sys

import numpy as np
from scipy.special import erfc

DEGREE = int(sys.argv[1]) if len(sys.argv) > 1 else 7
U = 4 * np.sqrt(2)

u = np.linspace(0, U, 40001)
h = np.log2(erfc(u / np.sqrt(2)))
weight = erfc(u / np.sqrt(2))
basis = np.vander(u, DEGREE + 1, increasing=True)
lawson = np.ones_like(u)
for _ in range(200):
    w = weight * lawson
    coef, *_ = np.linalg.lstsq(basis * w[:, None], h * w, rcond=None)
    err = np.abs(basis @ coef - h) * weight
    lawson *= err / err.max()
    lawson /= lawson.sum()

coef32 = coef.astype(np.float32)
x = np.linspace(-8, 8, 400001).astype(np.float32)
u32 = np.minimum(np.abs(x), np.float32(U))
acc = np.zeros_like(u32)
for a in coef32[::-1]:
    acc = np.float32(acc * u32 + a)
c = np.exp2(acc.astype(np.float64))
x64 = x.astype(np.float64)
exact_c = erfc(np.abs(x64) / np.sqrt(2))
gelu = 0.5 * x64 * np.where(x64 >= 0, 2 - c, c)
exact = 0.5 * x64 * np.where(x64 >= 0, 2 - exact_c, exact_c)
print("coefficients:", ", ".join(f"{v:.9e}f" for v in coef32))
print(f"max |c - erfc| = {np.abs(c - exact_c).max():.2e}; max |gelu - exact| = {np.abs(gelu - exact).max():.2e} on [-8, 8]")
