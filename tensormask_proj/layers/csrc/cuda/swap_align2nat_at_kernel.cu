// CUDA kernels of swap_align2nat_at (natural windows at requested positions; see
// swap_align2nat_at.h): the shared element functions AtForward and AtGradQ + BoxAdjoint
// (swap_align2nat_elements.h) launched on the current stream by the drivers of
// swap_align2nat_drivers.h. The backward gathers over requests sorted into buckets by window
// centre, so its cost does not grow with (map size) x (requests), and it is deterministic
// without atomics. Image ids are checked on the host (one device synchronisation per call, as
// is the bucketing of the backward's requests).
#include <ATen/TensorUtils.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../swap_align2nat_drivers.h"
#include "run_elements.cuh"

namespace tensormask_proj {
namespace {

at::Tensor swap_align2nat_at_forward_cuda(
    const at::Tensor& x,
    const at::Tensor& image_ids,
    const at::Tensor& rows,
    const at::Tensor& cols,
    int64_t lambda_val,
    double pad_val) {
  at::TensorArg x_arg{x, "x", 1}, ids_arg{image_ids, "image_ids", 2}, rows_arg{rows, "rows", 3},
      cols_arg{cols, "cols", 4};
  at::checkAllSameGPU("swap_align2nat_at", {x_arg, ids_arg, rows_arg, cols_arg});
  const c10::cuda::CUDAGuard device_guard(x.device());
  return drivers::at_forward(
      CudaRunner{c10::cuda::getCurrentCUDAStream()}, x, image_ids, rows, cols, lambda_val, pad_val);
}

at::Tensor swap_align2nat_at_backward_cuda(
    const at::Tensor& grad_output,
    const at::Tensor& image_ids,
    const at::Tensor& rows,
    const at::Tensor& cols,
    int64_t lambda_val,
    c10::IntArrayRef input_size) {
  at::TensorArg g_arg{grad_output, "grad_output", 1}, ids_arg{image_ids, "image_ids", 2},
      rows_arg{rows, "rows", 3}, cols_arg{cols, "cols", 4};
  at::checkAllSameGPU("swap_align2nat_at_backward", {g_arg, ids_arg, rows_arg, cols_arg});
  const c10::cuda::CUDAGuard device_guard(grad_output.device());
  return drivers::at_backward(
      CudaRunner{c10::cuda::getCurrentCUDAStream()},
      grad_output,
      image_ids,
      rows,
      cols,
      lambda_val,
      input_size);
}

}  // namespace

TORCH_LIBRARY_IMPL(tensormask_proj, CUDA, m) {
  m.impl("swap_align2nat_at", &swap_align2nat_at_forward_cuda);
  m.impl("swap_align2nat_at_backward", &swap_align2nat_at_backward_cuda);
}

}  // namespace tensormask_proj
