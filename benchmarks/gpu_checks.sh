#!/bin/bash
# Every check that needs a GPU, in one run of about 5 minutes on one GPU. On a machine with an
# NVIDIA GPU, a CUDA toolkit and the project's dependencies (`make setup`), from the project
# root:
#   bash benchmarks/gpu_checks.sh
# It uses .venv/bin/python when present, else python3 (set PYTHON to choose another), and
# prints, in order:
#   1. the environment (torch, GPU, compilers);
#   2. the build of tensormask_proj._C with its CUDA kernels, in place (SKIP_BUILD=1 skips it
#      when the extension was just built for this GPU);
#   3. tests/layers, whose CUDA cases compare every CUDA op with the CPU (values, gradients,
#      gradcheck, opcheck, determinism, bad input in a child process);
#   4. benchmarks/swap_align2nat.py on CUDA: op timings in ms (dense forward and backward
#      against torch.full, default and tiled forward, swap_align2nat_at, the at-backward's
#      scaling with the number of requests), then every op's largest |CUDA - CPU| and whether two
#      CUDA runs are identical; with OFFICIAL_CSRC=DIR (detectron2's
#      projects/TensorMask/tensormask/layers/csrc) also against the official CUDA op;
#   5. one training iteration of the TensorMask and BlendMask quick configs and of their Mask
#      R-CNN baseline (benchmarks/train_step.py: GPU ms per iteration, 3 significant digits);
#   6. inference per image of Mask R-CNN, TensorMask (dense and sparse windows) and BlendMask,
#      R50-FPN at 800x1067 (benchmarks/inference.py: ms per image).
# Each step has its own time limit, so that one slow step does not starve the others.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
START=$(date +%s)
step() { echo; echo "=== $1 ($(($(date +%s) - START)) s)"; }

step "environment"
"$PYTHON" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, \
'CUDA', torch.version.cuda); print(torch.cuda.get_device_name(0) if torch.cuda.is_available() \
else 'NO GPU VISIBLE: the CUDA checks below will be skipped')"
c++ --version | head -1
nvcc --version | tail -1

if [ "${SKIP_BUILD:-0}" != "1" ]; then
  step "build tensormask_proj._C with the CUDA kernels"
  build_log=$(mktemp)
  FORCE_CUDA=1 timeout 240 "$PYTHON" setup.py build_ext --inplace > "$build_log" 2>&1
  status=$?
  tail -3 "$build_log"
  if [ $status -ne 0 ]; then
    echo "build FAILED (exit status $status); the full log is $build_log"
    exit 1
  fi
fi

step "tests/layers (CPU and CUDA)"
timeout 120 "$PYTHON" -m pytest -q -p no:cacheprovider tests/layers 2>&1 | tail -15

step "op benchmark and CUDA-vs-CPU comparison"
timeout 90 "$PYTHON" benchmarks/swap_align2nat.py --cuda-only --skip-reference --repeats 10 \
  ${OFFICIAL_CSRC:+--official-csrc "$OFFICIAL_CSRC"}

step "training iteration: TensorMask and BlendMask quick configs, Mask R-CNN baseline"
timeout 100 "$PYTHON" benchmarks/train_step.py --iters 3 \
  configs/quick_schedules/tensormask_R_18_GN_FPN_shapes.yaml \
  configs/quick_schedules/blendmask_R_18_GN_FPN_shapes.yaml \
  configs/Baselines/mask_rcnn_R_18_GN_FPN_shapes.yaml

step "inference (CUDA, 800x1067, 100 detections)"
timeout 90 "$PYTHON" benchmarks/inference.py --device cuda --repeats 5 \
  --models mask_rcnn,tensormask_dense,tensormask_sparse,blendmask

step "done"
