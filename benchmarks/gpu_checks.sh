#!/usr/bin/env bash
# The GPU checks of the training, latency and export issues, in one run on a CUDA machine.
#
#   bash benchmarks/gpu_checks.sh --fetch-wheels   # on a machine with the network: wheels of our
#                                                  # dependencies that a bare CUDA image lacks, into .whl/
#   bash benchmarks/gpu_checks.sh [OUT_DIR]        # on the GPU machine, from the repository root
#
# What it runs, each step under its own time limit so one slow step cannot eat the others:
#   1. the tests that need a GPU (training in bf16 on CUDA, the torch-cuda latency runtime,
#      TensorRT where `import tensorrt` works);
#   2. bench_supernet.py --cuda: training-step time, supernet vs the extracted static network, at
#      224 px for ofa-mbv3-w1.0 and 32 px for cifar (channels_last, bf16 autocast);
#   3. a torch-cuda latency table of ofa-mbv3-w1.0 at batch 1 (3 resolutions), calibrated on 20 and
#      validated on 100 held-out subnets;
#   4. bench_export.py --cuda: torch-cuda vs the ONNX Runtime CUDA execution provider (skipped,
#      with the reason in its JSON, where onnxruntime has no CUDA provider).
# Results land in OUT_DIR (default gpu-checks/): log.txt (everything printed), env.txt, bench_supernet_cuda.json,
# gpu.json (+ gpu.validation.png) and bench_export_cuda.json. About 8 minutes on one H100.
# Where `pip install -e .` already worked the wheels are not needed; where .whl/ exists they are
# installed into /tmp/site (no index, no dependencies pulled) and put on PYTHONPATH.
set -u -o pipefail
cd "$(dirname "$0")/.."

# what a bare PyTorch CUDA image lacks of our dependencies (pymoo, skops and what they need)
WHEELS="pymoo==0.6.2 alive-progress==3.3.0 about-time==4.2.1 graphemeu==0.7.2 autograd==1.9.1 cma==4.5.0
Deprecated==1.3.1 moocore==0.3.2 cffi==2.1.1 pycparser==3.12 platformdirs==4.14.9 skops==0.16.0 prettytable==3.19.0 wcwidth==0.9.5"

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    mkdir -p .whl
    for w in $WHEELS; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "$w" || { echo "error: could not download $w" >&2; exit 1; }
    done
    ls .whl
    exit 0
fi

OUT_DIR=${1:-gpu-checks}
mkdir -p "$OUT_DIR"
exec > >(tee "$OUT_DIR/log.txt") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
python3 - > "$OUT_DIR/env.txt" <<'EOF' || { echo "error: no CUDA GPU visible to PyTorch: run this on the GPU machine"; exit 2; }
import onnxruntime, platform, torch
if not torch.cuda.is_available():
    raise SystemExit(1)
print(f"gpu: {torch.cuda.get_device_name(0)}; torch {torch.__version__} (CUDA {torch.version.cuda}); python {platform.python_version()}")
print(f"onnxruntime {onnxruntime.__version__}: {onnxruntime.get_available_providers()}")
EOF
cat "$OUT_DIR/env.txt"

failed=()
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    echo "== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0)) s"
    [[ $rc == 0 ]] || failed+=("$name (exit $rc)")
}

step tests 150 python3 -m pytest -q -rs -p no:cacheprovider tests/test_train.py tests/test_latency.py tests/test_export.py \
    -k "gpu or cuda or tensorrt"
step bench-supernet 90 python3 benchmarks/bench_supernet.py --cuda --no-reference --rounds 5 --steps 10 --warmup 5 \
    --count-archs 10000 --output "$OUT_DIR/bench_supernet_cuda.json"
step latency-build 200 python3 -m ofa latency build --space ofa-mbv3-w1.0 --runtime torch-cuda --device gpu --batch 1 \
    --resolutions 160 192 224 --out "$OUT_DIR/gpu.json"
step latency-calibrate 60 python3 -m ofa latency calibrate --table "$OUT_DIR/gpu.json" --n 20
step latency-validate 120 python3 -m ofa latency validate --table "$OUT_DIR/gpu.json" --n 100
step bench-export 60 python3 benchmarks/bench_export.py --cuda --cases mbv3 --batches 1 --repeats 30 \
    --output "$OUT_DIR/bench_export_cuda.json"

if (( ${#failed[@]} )); then
    echo "failed: ${failed[*]}"
    exit 1
fi
echo "all GPU checks ran; results in $OUT_DIR/"
