#!/usr/bin/env bash
# GPU check for a machine with the NVIDIA driver (CUDA 13, driver >= 580), Python and PyTorch, but no Rust
# toolchain and no network. Runs a cpeal release binary built elsewhere:
#   1. finds libcuda and libnvrtc.so.13 (PyTorch's nvidia/cu13/lib under site-packages, or a CUDA toolkit),
#   2. `cpeal selftest --device cuda` (every kernel against its CPU reference; stops on failure),
#   3. `cpeal bench-kernels --device cuda` (our GEMM on ViT-B/16 shapes) next to torch.matmul bf16 on the same
#      shapes and a large bf16 matmul as the measured peak, in the same run on the same GPU,
#   4. when the binary has `cpeal bench forward`: PyTorch's ViT-B/16 at batch 256, then ours under each setting
#      of GPU_CHECK_VARIANTS (default: the persistent GEMMs forced through CPEAL_GEMM_SM90, the attention
#      candidates through CPEAL_ATTENTION, the LayerNorm folded into the GEMMs by CPEAL_LN_FOLD, each GEMM
#      shape on its fastest kernel in bench-kernels by CPEAL_GEMM_SM90's per-role form; `A=x+B=y` sets both),
#      then the winners (> 3% over the default) combined, the device time per kernel
#      (CPEAL_PROFILE=1) of the default and of the fastest setting and PyTorch's kernels (bench/torch_profile.py),
#      then every model under the fastest setting
#      (the defaults to be) against PyTorch eager at batch 1…512,
#   5. the selection rows of bench-kernels (uncertainty scores, top-k) beside PyTorch eager's softmax entropy and
#      torch.topk (bench/torch_select.py), last, while within a minute past the budget,
# and writes a markdown report to bench/results/gpu-check-<date>-<gpu>.md (copied to $OUT when set, as on a
# lent device machine), rewritten after every section and model row. Benchmarks that would start after
# GPU_CHECK_BUDGET seconds (default 420) are listed as not run, so that a run ends in about 8 minutes (a step takes
# seconds; each has a time limit), inside a lent machine's 600 s a call.
# tests/gpu_check_script.rs runs it here against a stub binary.
#
#   scripts/gpu-check.sh [path/to/cpeal] [batch]      (defaults: target/release/cpeal, 64)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

BIN=${1:-target/release/cpeal}
BATCH=${2:-64}
PY=${PYTHON:-python3}
[[ -x "$BIN" ]] || { echo "error: no executable cpeal at $BIN (build it elsewhere: cargo build --release; strip -o target/release/cpeal-gpu target/release/cpeal to carry it)" >&2; exit 1; }

source scripts/gpu-env.sh

GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1 || echo unknown)
DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1 || echo unknown)
STAMP=$(date -u +%Y-%m-%dT%H%MZ)
SLUG=$(echo "$GPU" | tr -c 'A-Za-z0-9\n' '-' | tr -s '-' | sed 's/-$//')
OUTDIR=${GPU_CHECK_OUTDIR:-bench/results}
mkdir -p "$OUTDIR"
REPORT="$OUTDIR/gpu-check-$STAMP-$SLUG.md"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# On a lent device machine only what lands under $OUT comes back. The report is rewritten and delivered after
# every section, so a run cut off by its time limit still returns what it measured.
deliver() {
    if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then
        cp "$REPORT" "$OUT/" && echo "copied to $OUT/$(basename "$REPORT")"
    fi
}
# The markdown report from the sections done so far (a missing one reads "not run").
write_report() {
    section() { cat "$1" 2>/dev/null || echo "not run (cut off before this section)"; }
    {
        echo "# GPU check $STAMP — $GPU"
        echo
        echo "Driver $DRIVER; NVRTC \`$NVRTC\`; binary \`$BIN\` ($("$BIN" --version 2>/dev/null || echo '?')); batch $BATCH (ViT-B/16, 197 tokens)."
        echo
        echo "## Kernels vs PyTorch (same run, same GPU)"
        echo
        section "$WORK/torch.md"
        echo
        echo "## cpeal bench-kernels"
        echo
        section "$WORK/ours.md"
        echo
        echo "## Models"
        echo
        if [[ -s "$WORK/models.md" ]]; then cat "$WORK/models.md"; else echo "$MODEL_SECTION"; fi
        echo
        echo "## Kernels each setting ran (ViT-B/16, batch 256)"
        echo
        section "$WORK/kernels.md"
        echo
        echo "## Where the time goes (ViT-B/16, batch 256, CPEAL_PROFILE=1)"
        echo
        section "$WORK/profile.md"
        echo
        echo "## Selftest ($SELFTEST)"
        echo
        echo '```'
        section "$WORK/selftest.txt"
        echo '```'
    } >"$REPORT"
    deliver
}
MODEL_SECTION="not run (cut off before this section)"
# Sections that would start after this many seconds are left out (the lent machine's limit is 600 s a call).
BUDGET=${GPU_CHECK_BUDGET:-420}
over_budget() { ((SECONDS >= BUDGET)); }
# Number `key` of the one-line JSON object on stdin (cpeal's compact JSON, or Python's with spaces); fails when
# it is absent. (Shell, not a Python process per row: a rehearsal runs this script many times on CI.)
json_number() {
    local value
    value=$(sed -n "s/.*\"$1\": *\(-\{0,1\}[0-9][0-9.eE+-]*\).*/\1/p" | head -n 1)
    [[ -n $value ]] && echo "$value"
}
# $1 / $2, scaled by $4 (default 1), through the printf format $3; "-" unless both are numbers and $2 > 0.
quotient() {
    awk -v a="$1" -v b="$2" -v f="$3" -v s="${4:-1}" 'BEGIN {
        num = "^[0-9]+([.][0-9]*)?([eE][-+]?[0-9]+)?$"
        if (a ~ num && b ~ num && b + 0 > 0) printf f "\n", s * a / b; else print "-" }'
}
echo "GPU: $GPU (driver $DRIVER); libcuda: $LIBCUDA; NVRTC: $NVRTC"

# --- 1. correctness ---------------------------------------------------------------------------------------------
echo "== selftest"
SELFTEST=passed
# Opt-in candidate kernels (bench/results/gpu-notes-*.md) are checked second, a group at a time, each in its own
# process and time limit: when one fails, hangs or faults, the defaults and the other groups are still timed,
# and the failed ones are left out at model level. The selection kernels new on 2026-12-07 (top-k and its k-th
# score, coreset, BADGE) are a group of their own until a GPU has run them: no model runs them, so their failure
# must not stop the model rows.
CANDIDATE_GROUPS="gemm_sm90_pp-,gemm_sm90_ppo-,gemm_sm90_coop- gemm_sm90_coopmc-,gemm_sm90_ppomc-,gemm_sm90_coopmw- attention_fwd_tail16 attention_fwd_wgmma lnfold_,lnstats_,layernorm_stats topk_,coreset_,badge_"
CANDIDATES=${CANDIDATE_GROUPS// /,}
BROKEN_CANDIDATES=""  # the candidate kernels that failed a case
HUNG_GROUPS=""        # the prefixes of the groups whose selftest hung or crashed (no verdict)
if ! timeout 180 "$BIN" selftest --device cuda --exclude "$CANDIDATES" 2>&1 | tee "$WORK/selftest.txt"; then
    SELFTEST=FAILED
fi
if [[ $SELFTEST == passed ]]; then
    for group in $CANDIDATE_GROUPS; do
        status=0
        timeout 60 "$BIN" selftest --device cuda --only "$group" >"$WORK/group.txt" 2>&1 || status=$?
        tee -a "$WORK/selftest.txt" <"$WORK/group.txt"
        ((status == 0)) && continue
        BROKEN_CANDIDATES+=$(grep -E '  (FAIL|ERROR)' "$WORK/group.txt" | awk '{printf "%s ", $1}' || true)
        if ! grep -q 'cases failed' "$WORK/group.txt"; then
            HUNG_GROUPS+="${group//,/ } "
            echo "selftest of $group: no verdict (exit $status: timed out or crashed)" | tee -a "$WORK/selftest.txt"
        fi
    done
    if [[ -n "$BROKEN_CANDIDATES$HUNG_GROUPS" ]]; then
        SELFTEST="passed for the defaults; FAILED for candidates: $BROKEN_CANDIDATES${HUNG_GROUPS:+(no verdict: ${HUNG_GROUPS% })}"
        echo "warning: $SELFTEST; they are not used at model level" >&2
    fi
fi
if [[ $SELFTEST == FAILED ]]; then
    { echo "# GPU check $STAMP — $GPU"; echo; echo "selftest FAILED:"; echo '```'; cat "$WORK/selftest.txt"; echo '```'; } >"$REPORT"
    if [[ -z "${GPU_CHECK_KEEP_GOING:-}" ]]; then
        deliver
        echo "error: selftest failed; no benchmarks are run on wrong kernels (GPU_CHECK_KEEP_GOING=1 to diagnose)" >&2
        exit 1
    fi
    echo "warning: selftest failed; benchmarks follow for diagnosis only (GPU_CHECK_KEEP_GOING)" >&2
fi

# --- 2. our kernels ---------------------------------------------------------------------------------------------
echo "== bench-kernels (batch $BATCH)"
# Every candidate prefix that a failed kernel starts with, and the groups without a verdict, are not timed.
SKIP_PREFIXES=$HUNG_GROUPS
for prefix in ${CANDIDATES//,/ }; do
    for name in $BROKEN_CANDIDATES; do [[ $name == "$prefix"* ]] && SKIP_PREFIXES+="$prefix " && break; done
done
SKIP=()
[[ -n "${SKIP_PREFIXES// /}" ]] && SKIP=(--skip "$(echo $SKIP_PREFIXES | tr ' ' ,)")
timeout 120 "$BIN" bench-kernels --device cuda --batch "$BATCH" ${SKIP[@]+"${SKIP[@]}"} | tee "$WORK/ours.md" || echo "bench-kernels failed (exit $?)" | tee -a "$WORK/ours.md"
write_report

# --- 3. PyTorch on the same shapes, same GPU, same run ---------------------------------------------------------
echo "== torch.matmul bf16"
timeout 120 "$PY" - "$BATCH" "$WORK/ours.md" >"$WORK/torch.md" <<'EOF' || echo "torch comparison failed (exit $?)" >>"$WORK/torch.md"
import re, sys, torch
sys.path.insert(0, "bench")
from torch_timing import median_ms
batch, ours_path = int(sys.argv[1]), sys.argv[2]
dev = torch.device("cuda")
torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False

def tflops(m, n, k, ms):
    return 2 * m * n * k / (ms * 1e-3) / 1e12

m = batch * 197
shapes = {"qkv": (2304, 768), "proj": (768, 768), "fc1+gelu": (3072, 768), "fc2": (768, 3072)}
ours = {}
for line in open(ours_path):
    g = re.match(r"\|\s*gemm_bf16 (\S+)\s*\|[^|]*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", line)
    if g:
        ours[g.group(1)] = (float(g.group(2)), float(g.group(3)))
big = 8192
a = torch.randn(big, big, device=dev, dtype=torch.bfloat16)
b = torch.randn(big, big, device=dev, dtype=torch.bfloat16)
peak = tflops(big, big, big, median_ms(lambda: a @ b, 20))
print(f"Measured bf16 matmul peak (torch, {big}^3): **{peak:.0f} TFLOP/s**\n")
src = torch.randn(1 << 30, device=dev)
dst = torch.empty_like(src)
copy_ms = median_ms(lambda: dst.copy_(src), 10)
print(f"Measured device memory bandwidth (torch copy of 4 GiB, read + write): **{2 * src.numel() * 4 / copy_ms / 1e6:.0f} GB/s**\n")
del src, dst
print("| GEMM (ViT-B/16) | M x N x K | cpeal (us) | cpeal TFLOP/s | torch.matmul (us) | torch TFLOP/s | cpeal / torch | cpeal / peak |")
print("|---|---|---|---|---|---|---|---|")
for name, (n, k) in shapes.items():
    x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
    w = torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.05
    ms = median_ms(lambda: torch.matmul(x, w.t()))
    t = tflops(m, n, k, ms)
    us, tf = ours.get(name, (float("nan"), float("nan")))
    print(f"| {name} | {m} x {n} x {k} | {us:.1f} | {tf:.1f} | {ms * 1e3:.1f} | {t:.1f} | {tf / t:.2f} | {tf / peak:.0%} |")
# Attention: each of our kernels (bench-kernels rows) beside PyTorch's SDPA (what the eager anchor model runs).
att = [l.split("|") for l in open(ours_path) if l.startswith("| attention_fwd_")]
q, k, v = (torch.randn(batch, 12, 197, 64, device=dev, dtype=torch.bfloat16) for _ in range(3))
sdpa_ms = median_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
att_flop = 4 * batch * 12 * 197 * 197 * 64
print(f"\n| attention (ViT-B/16, {batch} x 12 heads x 197 x 64) | cpeal (us) | SDPA (us) | cpeal / SDPA speed |")
print("|---|---|---|---|")
for cells in att:
    us = float(cells[3])
    print(f"| {cells[1].strip()} | {us:.1f} | {sdpa_ms * 1e3:.1f} | {sdpa_ms * 1e3 / us:.2f} |")
print(f"\nSDPA: {att_flop / (sdpa_ms * 1e-3) / 1e12:.0f} TFLOP/s")
print(f"\ntorch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
cat "$WORK/torch.md"
write_report

# --- 4. whole models, when this binary can -----------------------------------------------------------------------
MODEL_SECTION="Model benchmark: this binary has no \`cpeal bench forward\` subcommand."
# One table row into models.md, then the report rewritten and delivered (so a cut-off run keeps its rows).
row() {
    echo "$1" | tee -a "$WORK/models.md"
    write_report >/dev/null
}
# Runs a command under a setting's environment (`default`: none; `A=x+B=y`: both).
with_setting() {
    local vars=()
    [[ $1 == default ]] || IFS=+ read -ra vars <<<"$1"
    shift
    env ${vars[@]+"${vars[@]}"} "$@"
}
# The kernel-name stems one part of a setting (`A=x`) switches on.
setting_stems() {
    local item
    case $1 in
        CPEAL_LN_FOLD=on) echo "lnfold_ lnstats_ layernorm_stats" ;;
        CPEAL_ATTENTION=*) echo "attention_fwd_${1#*=}_" ;;
        # A variant or a per-role list `qkv:<label>,fc2:<label>`: every variant it names.
        CPEAL_GEMM_SM90=*) for item in $(tr , ' ' <<<"${1#*=}"); do
                [[ ${item#*:} == off ]] || echo "gemm_sm90_${item#*:}_"
            done ;;
    esac
}
# Whether a setting switches on a kernel that failed the selftest, or one of a group without a verdict.
setting_broken() {
    local part stem name prefix
    for part in ${1//+/ }; do
        for stem in $(setting_stems "$part"); do
            for name in $BROKEN_CANDIDATES; do [[ $name == *"$stem"* ]] && return 0; done
            for prefix in $HUNG_GROUPS; do [[ $stem == "$prefix"* ]] && return 0; done
        done
    done
    return 1
}
if "$BIN" bench forward --help >/dev/null 2>&1; then
    echo "== cpeal bench forward --device cuda: candidate settings, then every model vs PyTorch eager (bf16, SDPA)"
    # Candidate kernels at model level (ViT-B/16, batch 256), each switched on by an environment setting and
    # timed right after the default, so a kernel that wins in bench-kernels shows what it does to a whole
    # forward before it becomes the default. First, because these rows decide the defaults.
    COMBINED_TAIL16=CPEAL_LN_FOLD=on+CPEAL_GEMM_SM90=ppo-n128s5+CPEAL_ATTENTION=tail16
    COMBINED_WGMMA=CPEAL_LN_FOLD=on+CPEAL_GEMM_SM90=ppo-n128s5+CPEAL_ATTENTION=wgmma
    # Each GEMM shape on its fastest kernel in bench-kernels' summary (`fastest kernel` per shape), as the
    # per-role form of CPEAL_GEMM_SM90 (`qkv:<label>,…`; a shape whose fastest is the default is left out):
    # what a per-shape default in auto_sm90 would do to a whole forward. Alone, and with the fold and wgmma.
    PER_ROLE=$(python3 - "$WORK/ours.md" <<'PYEOF' 2>/dev/null || true
import re, sys
roles = {"qkv": "qkv", "proj": "proj", "fc1+gelu": "fc1", "fc2": "fc2"}
picks = []
for line in open(sys.argv[1]):
    g = re.match(r"\|\s*(qkv|proj|fc1\+gelu|fc2)\s*\|[^|]*\|\s*(\S+)\s*\|", line)
    if not g or g.group(2) == "gemm_bf16":
        continue
    kernel = g.group(2)
    label = "off" if kernel == "gemm_sm80_bf16" else kernel.removeprefix("gemm_sm90_").removesuffix("_bf16")
    picks.append(f"{roles[g.group(1)]}:{label}")
print("CPEAL_GEMM_SM90=" + ",".join(picks) if picks else "")
PYEOF
)
    COMBINED_ROLE=${PER_ROLE:+CPEAL_LN_FOLD=on+$PER_ROLE+CPEAL_ATTENTION=wgmma}
    # PyTorch's ViT-B/16 at batch 256 first, so every setting's row has the goal's ratio even if the budget
    # runs out before the full model table.
    ANCHOR=$(timeout 120 python3 "$ROOT/bench/gpu_forward.py" --arch vit-b16 --batch-sizes 256 2>/dev/null \
        | head -n 1 | json_number images_per_s || echo "n/a")
    row "PyTorch eager (SDPA, bf16) ViT-B/16 at batch 256 in this run: $ANCHOR images/s"
    row ""
    row "| ViT-B/16 batch 256, setting | cpeal images/s | cpeal / PyTorch |"
    row "|---|---|---|"
    # One setting's row; its images/s go into IPS[setting] ("failed" or empty when not run).
    declare -A IPS=()
    time_setting() {
        local setting=$1 label=${2:-$1}
        if [[ $setting != default ]] && setting_broken "$setting"; then
            row "| $label | not run: failed the selftest | |"
            return
        fi
        if over_budget; then
            row "| $label | not run: past the ${BUDGET} s budget | |"
            return
        fi
        local ips ratio
        with_setting "$setting" timeout 60 "$BIN" bench forward --arch vit-b16 --device cuda --batch-size 256 --iters 10 --json \
            >"$WORK/run.json" 2>"$WORK/err.txt" || true
        ips=$(json_number images_per_s <"$WORK/run.json" || echo "failed")
        [[ "$ips" == failed ]] && tail -n 5 "$WORK/err.txt" >&2
        # What the setting ran: a row that did not reach its candidate shows here.
        local kernels
        kernels=$(sed -n 's/.*"kernels": *\[\([^]]*\)\].*/\1/p' "$WORK/run.json" | sed 's/", *"/, /g; s/"//g')
        if [[ -n $kernels ]]; then echo "- \`$label\`: $kernels" >>"$WORK/kernels.md"; fi
        IPS[$setting]=$ips
        ratio=$(quotient "$ips" "$ANCHOR" "%.2fx")
        row "| $label | $ips | $ratio |"
    }
    for setting in default ${GPU_CHECK_VARIANTS:-CPEAL_GEMM_SM90=pp-n128s5 CPEAL_GEMM_SM90=ppo-n128s5 CPEAL_GEMM_SM90=coop-n128s4 CPEAL_GEMM_SM90=coop-n256s4 CPEAL_GEMM_SM90=coopmw-n256s4 CPEAL_GEMM_SM90=coopmc-n128s4 CPEAL_GEMM_SM90=ppomc-n128s5 CPEAL_ATTENTION=tail16 CPEAL_ATTENTION=tail16x4 CPEAL_ATTENTION=tail16w CPEAL_ATTENTION=wgmma CPEAL_LN_FOLD=on $PER_ROLE $COMBINED_TAIL16 $COMBINED_WGMMA $COMBINED_ROLE}; do
        time_setting "$setting"
    done
    # The settings measured so far, one "name images/s" line each, through a rule of the notes (pick_setting):
    #   winners: per switch, the setting that beat the default by more than 3%, all at once ("" if none);
    #   fastest: the fastest setting measured, if more than 3% above the default, else "default".
    pick_setting() {
        for s in "${!IPS[@]}"; do echo "$s ${IPS[$s]}"; done | python3 -c '
import sys
ips = {}
for line in sys.stdin:
    name, _, value = line.strip().rpartition(" ")
    try:
        ips[name] = float(value)
    except ValueError:
        pass
base = ips.get("default")
wins = {n: v for n, v in sorted(ips.items()) if base is not None and n != "default" and v > 1.03 * base}
if sys.argv[1] == "fastest":
    print(max(wins, key=lambda n: (wins[n], [-ord(c) for c in n])) if wins else "default")  # ties: first name
else:
    best = {}
    for name, v in wins.items():
        switch = name.split("=")[0]
        if "+" not in name and v > best.get(switch, ("", 0.0))[1]:
            best[switch] = (name, v)
    print("+".join(best[k][0] for k in sorted(best)))' "$1" 2>/dev/null || echo "${2:-}"
    }
    WINNERS=$(pick_setting winners)
    if [[ -n "$WINNERS" && -z "${IPS[$WINNERS]+x}" ]]; then
        time_setting "$WINNERS" "winners combined: $WINNERS"
    fi
    # What the defaults become after this run: the fastest setting measured (a combination row may beat the
    # winners, e.g. the fold paying off only with a faster GEMM).
    FASTEST=$(pick_setting fastest default)
    row ""
    row "Fastest setting measured: \`$FASTEST\` (${IPS[$FASTEST]:-?} images/s)."
    # Device time per kernel (CPEAL_PROFILE=1: events around every launch, so the total runs a little long) for
    # the default and the fastest setting, else the best-guess combination of candidates (with the wgmma
    # attention, or tail16 where wgmma failed the selftest): what the next optimisation should aim at.
    BEST=$FASTEST
    [[ $BEST == default ]] && BEST=$COMBINED_WGMMA
    setting_broken "$BEST" && BEST=$COMBINED_TAIL16
    for setting in default "$BEST"; do
        if over_budget || { [[ $setting != default ]] && setting_broken "$setting"; }; then
            echo -e "$setting: not run (past the budget or a kernel failed the selftest)\n" >>"$WORK/profile.md"
            continue
        fi
        {
            echo "$setting:"
            echo
            with_setting "$setting" env CPEAL_PROFILE=1 timeout 60 "$BIN" bench forward --arch vit-b16 --device cuda --batch-size 256 --iters 3 --json 2>&1 >/dev/null \
                | grep -E '^(\||CPEAL_PROFILE)' || echo "(no profile: the run failed)"
            echo
        } >>"$WORK/profile.md"
        write_report >/dev/null
    done
    # The same for PyTorch eager (the anchor): its kernels per forward, cuBLAS's tile choice and the SDPA backend
    # in their names.
    if ! over_budget; then
        {
            echo "PyTorch eager (the anchor), per forward:"
            echo
            timeout 90 "$PY" "$ROOT/bench/torch_profile.py" --arch vit-b16 --batch 256 2>"$WORK/torch-err.txt" \
                || { echo "(no profile: bench/torch_profile.py failed)"; tail -n 3 "$WORK/torch-err.txt"; }
            echo
        } >>"$WORK/profile.md"
        write_report >/dev/null
    fi
    # Model FLOP utilisation: cpeal's matmul + attention FLOP/s over the bf16 matmul peak measured above.
    PEAK=$(grep -oE 'matmul peak[^*]*\*\*[0-9.]+' "$WORK/torch.md" | grep -oE '[0-9.]+$' || true)
    # Every model under the fastest setting (what the defaults become after this run).
    TABLE_SETTING=$FASTEST
    row ""
    row "Every model under the setting \`$TABLE_SETTING\`:"
    row ""
    row "| model | batch | cpeal images/s | PyTorch images/s | cpeal / PyTorch | cpeal TFLOP/s | MFU (vs ${PEAK:-?} TFLOP/s) |"
    row "|---|---|---|---|---|---|---|"
    for arch in vit-b16 clip-b16-vision dinov2-s14; do
        if over_budget; then
            row "| $arch | | not run: past the ${BUDGET} s budget | | | | |"
            continue
        fi
        timeout 120 python3 "$ROOT/bench/gpu_forward.py" --arch "$arch" >"$WORK/torch-$arch.jsonl" 2>"$WORK/torch-err.txt" || tail -n 5 "$WORK/torch-err.txt" >&2
        for bs in 1 8 64 256 512; do
            if over_budget; then
                row "| $arch | $bs | not run: past the ${BUDGET} s budget | | | | |"
                continue
            fi
            with_setting "$TABLE_SETTING" timeout 60 "$BIN" bench forward --arch "$arch" --device cuda --batch-size "$bs" --iters 10 --json \
                >"$WORK/run.json" 2>"$WORK/err.txt" || true
            ours=$(json_number images_per_s <"$WORK/run.json" || echo "failed")
            tflops=$(json_number tflop_per_s <"$WORK/run.json" || echo "-")
            [[ "$ours" == failed ]] && tail -n 5 "$WORK/err.txt" >&2
            mfu=$(quotient "$tflops" "$PEAK" "%.0f%%" 100)
            theirs=$(grep -E "\"batch\": *$bs[,} ]" "$WORK/torch-$arch.jsonl" 2>/dev/null | json_number images_per_s || echo "n/a")
            ratio=$(quotient "$ours" "$theirs" "%.2fx")
            row "| $arch | $bs | $ours | $theirs | $ratio | $tflops | $mfu |"
        done
    done
    MODEL_SECTION=$(cat "$WORK/models.md")
fi

# --- 5. selection beside PyTorch eager (last: the model rows above decide the defaults) -------------------------
# It may start up to a minute past the budget: it takes ~20 s, and the call's limit leaves that room.
if ((SECONDS >= BUDGET + 60)); then
    echo "(selection beside PyTorch: not run, past the ${BUDGET} s budget + 60 s)" >>"$WORK/torch.md"
else
    echo "== selection vs PyTorch eager"
    timeout 45 "$PY" "$ROOT/bench/torch_select.py" "$WORK/ours.md" >>"$WORK/torch.md" 2>"$WORK/torch-select-err.txt" \
        || { echo "(no selection comparison: bench/torch_select.py failed)"; tail -n 3 "$WORK/torch-select-err.txt"; } >>"$WORK/torch.md"
fi
write_report
echo "wrote $REPORT"
