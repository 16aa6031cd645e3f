// CUDA kernels of swap_align2nat (forward and backward): the shared element functions
// (swap_align2nat_elements.h) launched by the drivers of swap_align2nat_drivers.h on the current
// stream, without synchronising the device. Forward: DenseForward, one output element per index,
// or the tiled DenseForwardTiles with KernelChoice::kTiled (swap_align2nat.h). Backward:
// DenseGradQ then BoxAdjoint, gathers without atomics, so the backward is deterministic (unlike
// the official CUDA kernel, which uses atomicAdd). The CPU tests run these same functions.
#include <ATen/TensorUtils.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../swap_align2nat_drivers.h"
#include "run_elements.cuh"

namespace tensormask_proj {
namespace {

at::Tensor swap_align2nat_forward_cuda(const at::Tensor& x, int64_t lambda_val, double pad_val) {
  at::TensorArg x_arg{x, "x", 1};
  at::checkAllSameGPU("swap_align2nat", {x_arg});
  const c10::cuda::CUDAGuard device_guard(x.device());
  return drivers::dense_forward(
      CudaRunner{c10::cuda::getCurrentCUDAStream()},
      x,
      lambda_val,
      pad_val,
      /*tiled=*/kernel_choice() == KernelChoice::kTiled);
}

at::Tensor swap_align2nat_backward_cuda(
    const at::Tensor& grad_output, int64_t lambda_val, c10::IntArrayRef input_size) {
  at::TensorArg g_arg{grad_output, "grad_output", 1};
  at::checkAllSameGPU("swap_align2nat_backward", {g_arg});
  const c10::cuda::CUDAGuard device_guard(grad_output.device());
  return drivers::dense_backward(
      CudaRunner{c10::cuda::getCurrentCUDAStream()}, grad_output, lambda_val, input_size);
}

}  // namespace

TORCH_LIBRARY_IMPL(tensormask_proj, CUDA, m) {
  m.impl("swap_align2nat", &swap_align2nat_forward_cuda);
  m.impl("swap_align2nat_backward", &swap_align2nat_backward_cuda);
}

}  // namespace tensormask_proj
