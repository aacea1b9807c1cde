# Sourced by the GPU scripts: finds libcuda and libnvrtc.so.13 (PyTorch's nvidia/cu13/lib under site-packages,
# or a CUDA 13 toolkit) and exports CPEAL_NVRTC_LIB and LD_LIBRARY_PATH for a cpeal release binary.
PY=${PYTHON:-python3}

# --- libraries --------------------------------------------------------------------------------------------------
find_libcuda() {
    ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 /{print $NF; exit}'
    for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/nvidia/lib64 /usr/lib/wsl/lib; do
        if [[ -e "$d/libcuda.so.1" ]]; then echo "$d/libcuda.so.1"; fi
    done
    return 0
}
# A path given in the environment wins (an unusual install; the rehearsal in tests/gpu_check_script.rs).
LIBCUDA=${LIBCUDA:-$(find_libcuda | head -n1 || true)}
[[ -n "$LIBCUDA" ]] || { echo "error: libcuda.so.1 not found (is the NVIDIA driver installed?)" >&2; exit 1; }

find_nvrtc() {
    "$PY" - <<'EOF' 2>/dev/null || true
import site, sys, os
dirs = []
try:
    dirs += site.getsitepackages() + [site.getusersitepackages()]
except Exception:
    pass
dirs += sys.path
for d in dirs:
    p = os.path.join(d, "nvidia", "cu13", "lib", "libnvrtc.so.13")
    if os.path.isfile(p):
        print(p)
        break
EOF
    for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/lib/x86_64-linux-gnu; do
        if [[ -e "$d/libnvrtc.so.13" ]]; then echo "$d/libnvrtc.so.13"; fi
    done
    return 0
}
NVRTC=${CPEAL_NVRTC_LIB:-$(find_nvrtc | head -n1 || true)}
[[ -n "$NVRTC" ]] || { echo "error: libnvrtc.so.13 not found (PyTorch cu13 wheels or a CUDA 13 toolkit)" >&2; exit 1; }
export CPEAL_NVRTC_LIB="$NVRTC"
export LD_LIBRARY_PATH="$(dirname "$NVRTC"):$(dirname "$LIBCUDA")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

