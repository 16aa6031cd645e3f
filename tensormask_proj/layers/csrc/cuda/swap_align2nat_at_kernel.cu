// CUDA kernels of swap_align2nat_at (natural windows at requested positions; see
// swap_align2nat_at.h).
//
// Forward: one thread per output window cell, summing the corners visited by
// geometry::visit_natural_cell. Backward: a gather, so that it is deterministic without atomics:
// one thread per element of the map's gradient loops over the requests, skips those whose
// window cannot read the element (another image, or farther than Vout/2 + 1 rows or columns),
// and for the others finds the at most 2 x 2 cells that can read it from the spatial offset.
// A cell reads only the window rows v0 and v0 + 1 of its window corners (and likewise columns),
// so a cell is visited only when the element's plane is among them: at large lambda every
// request is within reach of every element, and visiting the 16 corners of each cell for each
// of the Vin^2 planes made the backward ~170x slower than the forward (281 ms vs 1.63 ms for
// 100 windows on each of the op benchmark's 12 tensors, H200). Its cost is still
// (map size) x (requests), small for the few hundred positives or detections of one level.
// Image ids are checked with a device-side assert (as PyTorch's own index kernels do), which
// avoids a device synchronisation.
#include "../swap_align2nat_at.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/TensorUtils.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <algorithm>

namespace tensormask_proj {
namespace {

using geometry::window_corners;

constexpr int kThreads = 256;

inline int64_t blocks_for(int64_t total) {
  // Grid-stride loops below: a bounded grid is enough.
  return std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, 65535));
}

template <typename scalar_t>
__global__ void at_forward_kernel(
    int64_t total,
    const scalar_t* __restrict__ x,
    const int64_t* __restrict__ image_ids,
    const int64_t* __restrict__ rows,
    const int64_t* __restrict__ cols,
    scalar_t* __restrict__ y,
    int64_t batch,
    int64_t v_in,
    int64_t lambda_val,
    int64_t height,
    int64_t width,
    at::opmath_type<scalar_t> pad) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t v_out = v_in * lambda_val;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t u = i % v_out;
    const int64_t v = (i / v_out) % v_out;
    const int64_t k = i / (v_out * v_out);
    const int64_t image_id = image_ids[k];
    CUDA_KERNEL_ASSERT(image_id >= 0 && image_id < batch);
    const scalar_t* image = x + image_id * v_in * v_in * height * width;
    acc_t value = 0;
    geometry::visit_natural_cell<acc_t>(
        v, u, rows[k], cols[k], v_in, lambda_val, height, width,
        [&](bool inside, int64_t plane, int64_t row, int64_t col, acc_t weight) {
          value += weight *
              (inside ? static_cast<acc_t>(image[(plane * height + row) * width + col]) : pad);
        });
    y[i] = static_cast<scalar_t>(value);
  }
}

template <typename scalar_t>
__global__ void at_backward_kernel(
    int64_t total,
    int64_t n,
    const scalar_t* __restrict__ grad_y,
    const int64_t* __restrict__ image_ids,
    const int64_t* __restrict__ rows,
    const int64_t* __restrict__ cols,
    scalar_t* __restrict__ grad_x,
    int64_t batch,
    int64_t v_in,
    int64_t lambda_val,
    int64_t height,
    int64_t width) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t v_out = v_in * lambda_val;
  const int64_t half = v_out / 2;
  // Cell v reads rows r0(v) = centre + v - half and, for even Vout, r0(v) + 1.
  const int64_t spatial = v_out % 2 == 0 ? 2 : 1;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t col = i % width;
    const int64_t row = (i / width) % height;
    const int64_t plane = (i / (width * height)) % (v_in * v_in);
    const int64_t plane_row = plane / v_in;
    const int64_t plane_col = plane % v_in;
    const int64_t b = i / (width * height * v_in * v_in);
    acc_t acc = 0;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t image_id = image_ids[k];
      CUDA_KERNEL_ASSERT(image_id >= 0 && image_id < batch);
      const int64_t dr = row - rows[k] + half;
      const int64_t dc = col - cols[k] + half;
      if (image_id != b || dr < 0 || dr >= v_out + spatial - 1 || dc < 0 ||
          dc >= v_out + spatial - 1) {
        continue;
      }
      for (int64_t sr = 0; sr < spatial; ++sr) {
        const int64_t v = dr - sr;
        if (v < 0 || v >= v_out) {
          continue;
        }
        const int64_t offset_from_corner_v = plane_row - window_corners<acc_t>(v, lambda_val).v0;
        if (offset_from_corner_v < 0 || offset_from_corner_v > 1) {
          continue;  // cell v does not read this plane's window row
        }
        for (int64_t sc = 0; sc < spatial; ++sc) {
          const int64_t u = dc - sc;
          if (u < 0 || u >= v_out) {
            continue;
          }
          const int64_t offset_from_corner_u = plane_col - window_corners<acc_t>(u, lambda_val).v0;
          if (offset_from_corner_u < 0 || offset_from_corner_u > 1) {
            continue;  // cell u does not read this plane's window column
          }
          const acc_t g = static_cast<acc_t>(grad_y[(k * v_out + v) * v_out + u]);
          geometry::visit_natural_cell<acc_t>(
              v, u, rows[k], cols[k], v_in, lambda_val, height, width,
              [&](bool inside, int64_t p, int64_t r, int64_t c, acc_t weight) {
                if (inside && p == plane && r == row && c == col) {
                  acc += weight * g;
                }
              });
        }
      }
    }
    grad_x[i] = static_cast<scalar_t>(acc);
  }
}

at::Tensor swap_align2nat_at_forward_cuda(
    const at::Tensor& x_in,
    const at::Tensor& image_ids_in,
    const at::Tensor& rows_in,
    const at::Tensor& cols_in,
    int64_t lambda_val,
    double pad_val) {
  constexpr const char* op = "swap_align2nat_at";
  const int64_t v_in = check_swap_align2nat_input(x_in, lambda_val, op);
  const int64_t n = check_swap_align2nat_at_requests(op, x_in, image_ids_in, rows_in, cols_in);
  at::TensorArg x_arg{x_in, "x", 1}, ids_arg{image_ids_in, "image_ids", 2},
      rows_arg{rows_in, "rows", 3}, cols_arg{cols_in, "cols", 4};
  at::checkAllSameGPU(op, {x_arg, ids_arg, rows_arg, cols_arg});
  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const int64_t v_out = v_in * lambda_val;
  auto y = at::empty({n, v_out, v_out}, x_in.options());
  if (y.numel() == 0) {
    return y;
  }
  const at::Tensor x = x_in.contiguous();
  const at::Tensor image_ids = image_ids_in.contiguous();
  const at::Tensor rows = rows_in.contiguous();
  const at::Tensor cols = cols_in.contiguous();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t total = y.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), op, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at_forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        total, x.const_data_ptr<scalar_t>(), image_ids.const_data_ptr<int64_t>(),
        rows.const_data_ptr<int64_t>(), cols.const_data_ptr<int64_t>(),
        y.mutable_data_ptr<scalar_t>(), x.size(0), v_in, lambda_val, x.size(2), x.size(3),
        static_cast<acc_t>(pad_val));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

at::Tensor swap_align2nat_at_backward_cuda(
    const at::Tensor& grad_output_in,
    const at::Tensor& image_ids_in,
    const at::Tensor& rows_in,
    const at::Tensor& cols_in,
    int64_t lambda_val,
    c10::IntArrayRef input_size) {
  constexpr const char* op = "swap_align2nat_at_backward";
  check_swap_align2nat_input_size(input_size, op);
  at::TensorArg g_arg{grad_output_in, "grad_output", 1}, ids_arg{image_ids_in, "image_ids", 2},
      rows_arg{rows_in, "rows", 3}, cols_arg{cols_in, "cols", 4};
  at::checkAllSameGPU(op, {g_arg, ids_arg, rows_arg, cols_arg});
  const c10::cuda::CUDAGuard device_guard(grad_output_in.device());
  auto grad_input = at::empty(input_size, grad_output_in.options());
  const int64_t v_in = check_swap_align2nat_at_backward(
      grad_output_in, grad_input, image_ids_in, rows_in, cols_in, lambda_val);
  const int64_t n = image_ids_in.size(0);
  if (grad_input.numel() == 0 || n == 0) {
    return grad_input.zero_();
  }
  const at::Tensor grad_output = grad_output_in.contiguous();
  const at::Tensor image_ids = image_ids_in.contiguous();
  const at::Tensor rows = rows_in.contiguous();
  const at::Tensor cols = cols_in.contiguous();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t total = grad_input.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), op, [&] {
    at_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        total, n, grad_output.const_data_ptr<scalar_t>(), image_ids.const_data_ptr<int64_t>(),
        rows.const_data_ptr<int64_t>(), cols.const_data_ptr<int64_t>(),
        grad_input.mutable_data_ptr<scalar_t>(), input_size[0], v_in, lambda_val,
        input_size[2], input_size[3]);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_input;
}

} // namespace

TORCH_LIBRARY_IMPL(tensormask_proj, CUDA, m) {
  m.impl("swap_align2nat_at", &swap_align2nat_at_forward_cuda);
  m.impl("swap_align2nat_at_backward", &swap_align2nat_at_backward_cuda);
}

} // namespace tensormask_proj
