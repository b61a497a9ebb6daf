#!/usr/bin/env bash
# One-command GPU check, sized for 8 minutes on one H200 with a tinycudann build (an estimate: not
# yet run on a GPU; each step has its own timeout). Prints one table of
#   device | pytest -m gpu | onnxruntime CUDA vs CPU provider on FaceBoxes and 3DDFA |
#   tinycudann vs PyTorch hash grid | training it/s (--iters, default 2000, paper-profile model)
#   | 512x512 render frames/s with each grid backend
# (bench/gpu_check.py does the checks; this wrapper prepares tinycudann and onnxruntime-gpu).
#
# Usage, from the repository root:
#   bench/gpu_check.sh --stage [DIR]      # HERE (no GPU needed): copy what the checks read into
#                                         # DIR (default .gpu, git-ignored): the two ONNX models,
#                                         # a prepared subject if one exists
#   bench/gpu_check.sh [options]          # THERE, on the GPU machine
# Options:
#   --assets DIR      what --stage copied (default .gpu); also looked up there: tcnn-src.tgz,
#                     onnxruntime_gpu-*.whl (or its parts onnxruntime_gpu.whl.part-*)
#   --tcnn-src PATH   tiny-cuda-nn source tree or .tgz: build tinycudann (encodings only) first
#                     when it does not import (default: ASSETS/tcnn-src.tgz if present)
#   --ort-wheel PATH  onnxruntime-gpu wheel, or a folder holding it split in parts (see below)
#   --out DIR         where the table (gpu_check.md / .json) and build logs go (default gpu_check_out)
#   --iters N         training iterations timed (default 2000)
#   --python EXE      interpreter (default: python3, the one holding PyTorch on the GPU machine)
#   --allow-cpu       dry run without CUDA: every GPU row is SKIP with its reason
#   -h, --help
# Exit status: 0 all rows PASS/SKIP, 1 a row failed, 2 no CUDA (without --allow-cpu), 64 usage.
#
# tinycudann is not on PyPI (no sdist carries its sources). The source tree it builds from is
# tiny-cuda-nn with its submodules cutlass and fmt at the commits it pins, e.g. from clones of
# github.com/NVlabs/tiny-cuda-nn, NVIDIA/cutlass and fmtlib/fmt:
#   mkdir -p t/dependencies/cutlass t/dependencies/fmt
#   git -C tiny-cuda-nn archive HEAD -- include src bindings CMakeLists.txt LICENSE.txt \
#       dependencies/json dependencies/pcg32 dependencies/pybind11_json dependencies/stbi | tar -x -C t
#   git -C cutlass archive "$(git -C tiny-cuda-nn rev-parse HEAD:dependencies/cutlass)" -- include \
#       tools/util/include LICENSE.txt | tar -x -C t/dependencies/cutlass
#   git -C fmt archive "$(git -C tiny-cuda-nn rev-parse HEAD:dependencies/fmt)" -- include src \
#       | tar -x -C t/dependencies/fmt
#   tar czf .gpu/tcnn-src.tgz -C t .          # about 2 MB
# The build (this script, when tinycudann does not import):
#   cd <src>/bindings/torch && TCNN_CUDA_ARCHITECTURES=<cc, 90 on H100/H200> MAX_JOBS=<cores> \
#       python3 setup.py --no-networks build_ext --inplace     # then PYTHONPATH=<src>/bindings/torch
#
# onnxruntime on the GPU image is the CPU build. onnxruntime-gpu (1.31.1: CUDA 13, cp312,
# manylinux_2_28) is a 256 MB wheel, more than one call may carry (64 MiB): download it here
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 -d .gpu onnxruntime-gpu==1.31.1
#   split -b 60M .gpu/onnxruntime_gpu-*.whl .gpu/onnxruntime_gpu.whl.part- && rm .gpu/onnxruntime_gpu-*.whl
# and carry the five parts in consecutive calls while the machine stays warm (carried ignored
# files stay there between calls), the last one running this script, which joins and installs
# them. Without the CUDA provider the two onnxruntime rows are SKIP with that reason.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY=python3
ASSETS=.gpu
OUT=gpu_check_out
TCNN_SRC=
ORT_WHEEL=
ITERS=2000
ALLOW_CPU=
STAGE=

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "gpu_check: $*" >&2; exit 64; }
need() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --stage) STAGE=1; if [ $# -ge 2 ] && [ "${2#-}" = "$2" ]; then ASSETS=$2; shift; fi ;;
        --assets) need "$@"; ASSETS=$2; shift ;;
        --tcnn-src) need "$@"; TCNN_SRC=$2; shift ;;
        --ort-wheel) need "$@"; ORT_WHEEL=$2; shift ;;
        --out) need "$@"; OUT=$2; shift ;;
        --iters) need "$@"; [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -ge 2 ] || die "--iters needs an integer >= 2, got '$2'"
                 ITERS=$2; shift ;;
        --python) need "$@"; PY=$2; shift ;;
        --allow-cpu) ALLOW_CPU=--allow-cpu ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
cd "$REPO" || exit 64

if [ -n "$STAGE" ]; then  # here: collect what the GPU machine cannot fetch
    mkdir -p "$ASSETS"
    mirror="${EMOHEAD_MIRROR:-$REPO/../shared}"
    for f in faceboxes.onnx 3ddfa_mb05.onnx; do
        src=""
        for cand in "resources/onnx/$f" "$mirror/models/3ddfa_v2/$f"; do
            [ -f "$cand" ] && { src=$cand; break; }
        done
        [ -n "$src" ] || { echo "gpu_check: $f not found (run the preprocess/expression export rules or set EMOHEAD_MIRROR)" >&2; exit 64; }
        cp "$src" "$ASSETS/$f" && echo "staged $ASSETS/$f (from $src)"
    done
    prep=$(ls results/render/*/prepared.npz 2>/dev/null | head -n 1)
    if [ -n "$prep" ]; then cp "$prep" "$ASSETS/prepared.npz" && echo "staged $ASSETS/prepared.npz (from $prep)"
    else echo "no results/render/*/prepared.npz: the checks will use the synthetic subject"; fi
    git check-ignore -q "$ASSETS" || echo "note: $ASSETS is not git-ignored; add it to .git/info/exclude before carrying it"
    echo "carry '$ASSETS' to the GPU machine and run: bench/gpu_check.sh --assets $ASSETS"
    exit 0
fi

mkdir -p "$OUT" || exit 64
OUT="$(cd "$OUT" && pwd)"
SITE="${TMPDIR:-/tmp}/emohead_gpu_site"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
PRE=()
start=$(date +%s)

# onnxruntime-gpu from a carried wheel (or its parts)
[ -z "$ORT_WHEEL" ] && ls "$ASSETS"/onnxruntime_gpu* >/dev/null 2>&1 && ORT_WHEEL="$ASSETS"
if [ -n "$ORT_WHEEL" ]; then
    whl=""
    if [ -d "$ORT_WHEEL" ]; then
        whl=$(ls "$ORT_WHEEL"/onnxruntime_gpu-*.whl 2>/dev/null | head -n 1)
        if [ -z "$whl" ] && ls "$ORT_WHEEL"/onnxruntime_gpu.whl.part-* >/dev/null 2>&1; then
            whl="$SITE/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl"
            mkdir -p "$SITE" && cat "$ORT_WHEEL"/onnxruntime_gpu.whl.part-* > "$whl"
        fi
    elif [ -f "$ORT_WHEEL" ]; then whl=$ORT_WHEEL; fi
    if [ -n "$whl" ] && "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE/ort" "$whl" \
            > "$OUT/ort_install.log" 2>&1; then
        export PYTHONPATH="$SITE/ort:$PYTHONPATH"
        PRE+=(--pre "onnxruntime-gpu install|PASS|$(basename "$whl")|")
    else
        PRE+=(--pre "onnxruntime-gpu install|FAIL|${whl:-no wheel in $ORT_WHEEL}|see ort_install.log")
    fi
fi

# tinycudann from source when it does not import
[ -z "$TCNN_SRC" ] && [ -f "$ASSETS/tcnn-src.tgz" ] && TCNN_SRC="$ASSETS/tcnn-src.tgz"
if ! "$PY" -c "import tinycudann" >/dev/null 2>&1; then
    if [ -z "$TCNN_SRC" ]; then
        PRE+=(--pre "tinycudann build|SKIP|no sources|PyTorch grid only (--tcnn-src, see --help)")
    elif ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
        PRE+=(--pre "tinycudann build|SKIP|no CUDA|")
    else
        t0=$(date +%s)
        build="$SITE/tcnn"
        rm -rf "$build" && mkdir -p "$build"
        if [ -d "$TCNN_SRC" ]; then cp -r "$TCNN_SRC"/. "$build"; else tar xzf "$TCNN_SRC" -C "$build"; fi
        cc=$("$PY" -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}{n}')")
        if (cd "$build/bindings/torch" && TCNN_CUDA_ARCHITECTURES=$cc MAX_JOBS=$(nproc) \
                timeout 330 "$PY" setup.py --no-networks build_ext --inplace) > "$OUT/tcnn_build.log" 2>&1 \
                && PYTHONPATH="$build/bindings/torch:$PYTHONPATH" "$PY" -c "import tinycudann" >> "$OUT/tcnn_build.log" 2>&1; then
            export PYTHONPATH="$build/bindings/torch:$PYTHONPATH"
            PRE+=(--pre "tinycudann build|PASS|sm_$cc, encodings only|$(tail -n 1 "$OUT/tcnn_build.log" | cut -c1-80)|$(( $(date +%s) - t0 ))")
        else
            PRE+=(--pre "tinycudann build|FAIL|see tcnn_build.log|$(grep -m1 -i 'error' "$OUT/tcnn_build.log" | cut -c1-160 | tr '|' '/')|$(( $(date +%s) - t0 ))")
        fi
    fi
fi

"$PY" "$REPO/bench/gpu_check.py" --assets "$ASSETS" --out "$OUT" --iters "$ITERS" $ALLOW_CPU ${PRE[@]+"${PRE[@]}"}
status=$?
echo "gpu_check: $(( $(date +%s) - start )) s in all; table in $OUT/gpu_check.md"
exit $status
