#!/usr/bin/env bash
# Static SASS facts per kernel, no GPU needed: compiles kernels/*.cu (headers spliced in, as the runtime does)
# with the CUDA 13 NVRTC wheel for one arch and disassembles with nvdisasm. It prints per kernel:
#   - the instruction count (code size: an epilogue unrolled too far shows here first);
#   - tensor-core ops (HGMMA = wgmma, HMMA = mma.sync);
#   - local-memory traffic (LDL/STL);
#   - special-function ops (MUFU);
#   - barriers, and FSETP.GEU (among others, the range test exp2f adds before MUFU.EX2);
#   - calls (CALL: IEEE division's and reciprocal's slow paths, which `/` brings without fast math).
#   scripts/sass-stats.sh [sm_90|sm_80] [kernel-name-regex]
# nvdisasm comes from the PyPI wheel nvidia-cuda-nvdisasm; 13.2 is the oldest published, and it reads CUDA
# 13.0's CUBINs. It is installed once into a cache folder like the NVRTC wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-sm_90}
FILTER=${2:-.}
source scripts/cuda-wheels.sh >/dev/null
DIS_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/cpeal/nvdisasm-13.2.51
if [[ ! -x "$DIS_DIR/nvidia/cu13/bin/nvdisasm" ]]; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$DIS_DIR" nvidia-cuda-nvdisasm==13.2.51
fi
NVDISASM="$DIS_DIR/nvidia/cu13/bin/nvdisasm" ARCH="$ARCH" FILTER="$FILTER" python3 - <<'PY'
import ctypes, os, re, subprocess, tempfile
lib = ctypes.CDLL(os.environ["CPEAL_NVRTC_LIB"])
arch, kfilter = os.environ["ARCH"], re.compile(os.environ["FILTER"])
headers = {h: open(f"kernels/{h}").read() for h in ("common.cuh", "hopper.cuh", "attention.cuh", "gemm_sm90.cuh")}
ops = [("HGMMA", "HGMMA"), ("HMMA", "HMMA"), ("LDL/STL", r"\b(LDL|STL)\b"), ("MUFU", "MUFU"),
       ("BAR", r"\bBAR\."), ("FSETP.GEU", "FSETP.GEU"), ("CALL", r"\bCALL\.")]

def cubin(name, src, target):
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), name.encode(), 0, None, None) == 0
    opts = [f"--gpu-architecture={target}".encode(), b"--std=c++17"]
    r = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    n = ctypes.c_size_t()
    if r != 0:
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n)); log = ctypes.create_string_buffer(n.value)
        lib.nvrtcGetProgramLog(prog, log)
        raise SystemExit(f"{name}: NVRTC failed\n{log.value.decode()}")
    lib.nvrtcGetCUBINSize(prog, ctypes.byref(n)); buf = ctypes.create_string_buffer(n.value)
    lib.nvrtcGetCUBIN(prog, buf)
    return buf.raw

print(f"{'kernel':40s} {'instr':>6s} " + " ".join(f"{o:>9s}" for o, _ in ops))
for f in sorted(os.listdir("kernels")):
    if not f.endswith(".cu"):
        continue
    hopper = f.endswith("_sm90.cu")
    if hopper and arch != "sm_90":
        continue
    src = open(f"kernels/{f}").read()
    for h, text in headers.items():
        src = src.replace(f'#include "{h}"', text)
    with tempfile.NamedTemporaryFile(suffix=".cubin") as tmp:
        tmp.write(cubin(f, src, "sm_90a" if hopper else arch)); tmp.flush()
        sass = subprocess.run([os.environ["NVDISASM"], "-c", tmp.name], capture_output=True, text=True, check=True).stdout
    for m in re.finditer(r"\.text\.(\w+):(.*?)(?=\.section|\Z)", sass, re.S):
        name, body = m.group(1), m.group(2)
        if not kfilter.search(name):
            continue
        instrs = [l for l in body.splitlines() if re.search(r"/\*[0-9a-f]{4,}\*/", l)]
        counts = [sum(1 for l in instrs if re.search(p, l)) for _, p in ops]
        print(f"{name:40s} {len(instrs):6d} " + " ".join(f"{c:9d}" for c in counts))
PY
