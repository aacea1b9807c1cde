# Sourced by the test scripts: install CUDA 13.0 NVRTC and its headers from the PyPI wheels once into a cache
# folder (pip --target; no venv, nothing system-wide) and point cpeal at them. The GPU machines have CUDA 13
# only, so CI compiles with the same NVRTC major version.
# Environment: CPEAL_CUDA_WHEELS (default ~/.cache/cpeal/cuda13-wheels).
NVRTC_VERSION=13.0.88
RUNTIME_VERSION=13.0.96
WHEELS=${CPEAL_CUDA_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/cpeal/cuda13-wheels}
STAMP="$WHEELS/.cpeal-wheels"
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$NVRTC_VERSION $RUNTIME_VERSION" ]]; then
    echo "== installing nvidia-cuda-nvrtc==$NVRTC_VERSION nvidia-cuda-runtime==$RUNTIME_VERSION into $WHEELS"
    rm -rf "$WHEELS"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$WHEELS" \
        "nvidia-cuda-nvrtc==$NVRTC_VERSION" "nvidia-cuda-runtime==$RUNTIME_VERSION"
    echo "$NVRTC_VERSION $RUNTIME_VERSION" >"$STAMP"
fi
LIB="$WHEELS/nvidia/cu13/lib"
test -f "$LIB/libnvrtc.so.13" || { echo "error: $LIB/libnvrtc.so.13 missing after install" >&2; exit 1; }
export CPEAL_NVRTC_LIB="$LIB/libnvrtc.so.13"
export LD_LIBRARY_PATH="$LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

