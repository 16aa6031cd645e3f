#!/bin/bash
# Every check that needs a GPU, in one run (each start of the lent GPU machine costs time).
# On the GPU machine, in the project root with .gpu/ copied along (see ../shared/ENVIRONMENT.md):
#   bash .gpu/run.sh bash benchmarks/gpu_checks.sh
# run.sh builds tensormask_proj._C for the GPU in place first. Prints, in order:
#   1. diagnostics of the raw-op error path (a C++ error once killed the process there);
#   2. tests/layers on CUDA (swap_align2nat and swap_align2nat_at: values against the CPU
#      kernels, gradients, gradcheck, opcheck, determinism, bad input in a child process);
#   3. the op benchmark on CUDA (ms, median and best: dense forward/backward vs torch.full,
#      swap_align2nat_at); with OFFICIAL_CSRC=DIR (detectron2's
#      projects/TensorMask/tensormask/layers/csrc) also against the official CUDA op built from it;
#   4. one training iteration, TensorMask quick config vs Mask R-CNN R-18-GN-FPN (ATen calls on
#      the CPU, ms per iteration on the GPU, ratios);
#   5. inference per image, Mask R-CNN R50-FPN vs TensorMask dense / sparse on the GPU.
# Each step has its own time limit so that one slow step does not starve the others.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
step() { echo; echo "=== $1 ($(date -u +%T))"; }

step "environment"
python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0))"
c++ --version | head -1
nvcc --version | tail -1

step "raw-op error path (each case in its own process, with a Python traceback on a crash)"
# (a) the kernels alone, (b) with the Python fake/autograd registrations, (c) on a CUDA tensor.
for setup in "import tensormask_proj._C" "import tensormask_proj.layers" "import tensormask_proj.layers; D='cuda'"; do
  timeout 120 python3 -X faulthandler -c "
import torch
D = 'cpu'
$setup
try:
    torch.ops.tensormask_proj.swap_align2nat(torch.randn(1, 5, 4, 4, device=D), 1, -6.0)
except RuntimeError as e:
    print('raised RuntimeError:', str(e).splitlines()[0][:80])
" 2>&1 | tail -15
  echo "  [$setup] exit status ${PIPESTATUS[0]}"
done

step "tests/layers"
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/layers 2>&1 | tail -15

step "op benchmark (CUDA)"
timeout 240 python3 benchmarks/swap_align2nat.py --cuda-only --skip-reference --repeats 10 \
  ${OFFICIAL_CSRC:+--official-csrc "$OFFICIAL_CSRC"}

step "training iteration"
timeout 400 python3 benchmarks/train_step.py --iters 4

step "inference (CUDA, 800x1067, 100 detections)"
timeout 300 python3 benchmarks/inference.py --device cuda --repeats 5 \
  --models mask_rcnn,tensormask_dense,tensormask_sparse
