// CUDA kernels of swap_align2nat (forward and backward).
//
// Forward: one thread per output element, each reading its (at most) 4 window corners x 4
// spatial corners directly from the input (see swap_align2nat.h for the geometry).
// Backward: a gather, not a scatter: one thread per element of the adjoint of Q computes the sum
// of the output gradients that read it (at most 2 x 2 window cells per corner pair, found in
// closed form), then a second kernel applies the adjoint of the 2x2 box average. There are no
// atomics, so the backward is deterministic (unlike the reference CUDA kernel, which uses
// atomicAdd), and both kernels run on the current stream without synchronising the device.
#include "../swap_align2nat.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/TensorUtils.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>
// (ATen/cuda/CUDAContext.h is avoided on purpose: it pulls in cuSPARSE/cuBLAS headers that a
// plain CUDA toolkit install may lack, and nothing here needs them.)

#include <algorithm>
#include <limits>

namespace tensormask_proj {
namespace {

using geometry::spatial_offset;
using geometry::window_corners;

constexpr int kThreads = 256;

inline int64_t num_blocks(int64_t total) {
  int sm_count = 0;
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, c10::cuda::current_device()));
  const int64_t max_blocks = static_cast<int64_t>(sm_count) * 32;
  return std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, max_blocks));
}

template <typename index_t>
__device__ inline index_t positive_mod(index_t a, index_t b) {
  const index_t m = a % b;
  return m < 0 ? m + b : m;
}

// Value of input plane `plane` at (r, c), or pad outside the plane.
template <typename scalar_t, typename acc_t, typename index_t>
__device__ inline acc_t read_or_pad(
    const scalar_t* plane,
    index_t r,
    index_t c,
    index_t height,
    index_t width,
    acc_t pad) {
  return (r >= 0 && r < height && c >= 0 && c < width)
      ? static_cast<acc_t>(plane[r * width + c])
      : pad;
}

template <typename scalar_t, typename index_t>
__global__ void forward_kernel(
    index_t total,
    const scalar_t* __restrict__ x,
    scalar_t* __restrict__ y,
    index_t v_in,
    index_t lambda_val,
    index_t h_in,
    index_t w_in,
    index_t h_out,
    index_t w_out,
    at::opmath_type<scalar_t> pad) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t v_out = v_in * lambda_val;
  const bool box = v_out % 2 == 0;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(blockDim.x) * gridDim.x) {
    index_t t = i;
    const index_t xo = t % w_out;
    t /= w_out;
    const index_t yo = t % h_out;
    t /= h_out;
    const index_t u = t % v_out;
    t /= v_out;
    const index_t v = t % v_out;
    const index_t n = t / v_out;
    const auto wv = window_corners<acc_t>(v, lambda_val);
    const auto wu = window_corners<acc_t>(u, lambda_val);
    const index_t r0 = yo * lambda_val + static_cast<index_t>(spatial_offset(v, v_out));
    const index_t c0 = xo * lambda_val + static_cast<index_t>(spatial_offset(u, v_out));
    acc_t acc = 0;
    for (int a = 0; a < 2; ++a) {
      const acc_t w_a = a ? wv.w1 : wv.w0;
      const index_t vi = static_cast<index_t>(wv.v0) + a;
      if (w_a == acc_t(0)) {
        continue;
      }
      for (int b = 0; b < 2; ++b) {
        const acc_t w_b = b ? wu.w1 : wu.w0;
        const index_t uj = static_cast<index_t>(wu.v0) + b;
        if (w_b == acc_t(0)) {
          continue;
        }
        acc_t sample;
        if (vi < 0 || vi >= v_in || uj < 0 || uj >= v_in) {
          sample = pad;
        } else {
          const scalar_t* plane = x + ((n * v_in + vi) * v_in + uj) * h_in * w_in;
          if (box) {
            sample = acc_t(0.25) *
                (read_or_pad(plane, r0, c0, h_in, w_in, pad) +
                 read_or_pad(plane, r0, c0 + 1, h_in, w_in, pad) +
                 read_or_pad(plane, r0 + 1, c0, h_in, w_in, pad) +
                 read_or_pad(plane, r0 + 1, c0 + 1, h_in, w_in, pad));
          } else {
            sample = read_or_pad(plane, r0, c0, h_in, w_in, pad);
          }
        }
        acc += w_a * w_b * sample;
      }
    }
    y[i] = static_cast<scalar_t>(acc);
  }
}

// Gradient of Q (see swap_align2nat.h) over its domain rows/cols [origin, origin + q_h/q_w).
template <typename scalar_t, typename out_t, typename index_t>
__global__ void grad_q_kernel(
    index_t total,
    const scalar_t* __restrict__ grad_y,
    out_t* __restrict__ grad_q,
    index_t v_in,
    index_t lambda_val,
    index_t q_h,
    index_t q_w,
    index_t origin,
    index_t h_out,
    index_t w_out) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t v_out = v_in * lambda_val;
  const index_t half = v_out / 2;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(blockDim.x) * gridDim.x) {
    index_t t = i;
    const index_t col = t % q_w + origin;
    t /= q_w;
    const index_t row = t % q_h + origin;
    t /= q_h;
    const index_t uj = t % v_in;
    t /= v_in;
    const index_t vi = t % v_in;
    const index_t n = t / v_in;
    acc_t acc = 0;
    for (int a = 0; a < 2; ++a) {
      int64_t v_begin64, v_end64;
      geometry::cells_with_lower_corner<acc_t>(vi - a, lambda_val, v_out, &v_begin64, &v_end64);
      const index_t v_begin = static_cast<index_t>(v_begin64);
      const index_t v_end = static_cast<index_t>(v_end64);
      // Output row yo reads Q row yo * lambda + v - half, so v == row + half (mod lambda).
      for (index_t v = v_begin + positive_mod<index_t>(row + half - v_begin, lambda_val);
           v < v_end;
           v += lambda_val) {
        const index_t yo = (row - (v - half)) / lambda_val;
        if (yo < 0 || yo >= h_out) {
          continue;
        }
        const auto wv = window_corners<acc_t>(v, lambda_val);
        const acc_t w_a = a ? wv.w1 : wv.w0;
        if (w_a == acc_t(0)) {
          continue;
        }
        for (int b = 0; b < 2; ++b) {
          int64_t u_begin64, u_end64;
          geometry::cells_with_lower_corner<acc_t>(
              uj - b, lambda_val, v_out, &u_begin64, &u_end64);
          const index_t u_begin = static_cast<index_t>(u_begin64);
          const index_t u_end = static_cast<index_t>(u_end64);
          for (index_t u = u_begin + positive_mod<index_t>(col + half - u_begin, lambda_val);
               u < u_end;
               u += lambda_val) {
            const index_t xo = (col - (u - half)) / lambda_val;
            if (xo < 0 || xo >= w_out) {
              continue;
            }
            const auto wu = window_corners<acc_t>(u, lambda_val);
            const acc_t w = w_a * (b ? wu.w1 : wu.w0);
            acc += w *
                static_cast<acc_t>(
                       grad_y[(((n * v_out + v) * v_out + u) * h_out + yo) * w_out + xo]);
          }
        }
      }
    }
    grad_q[i] = static_cast<out_t>(acc);
  }
}

// Adjoint of the 2x2 box average: grad_x[r][c] = (gq[r][c] + gq[r+1][c] + gq[r][c+1] +
// gq[r+1][c+1]) / 4, with gq stored with origin -1 (its row/col index is the input's plus one).
template <typename scalar_t, typename index_t>
__global__ void box_adjoint_kernel(
    index_t total,
    const at::opmath_type<scalar_t>* __restrict__ grad_q,
    scalar_t* __restrict__ grad_x,
    index_t h_in,
    index_t w_in) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t q_w = w_in + 1;
  const index_t q_plane = (h_in + 1) * q_w;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(blockDim.x) * gridDim.x) {
    const index_t c = i % w_in;
    const index_t r = (i / w_in) % h_in;
    const index_t p = i / (w_in * h_in);
    const acc_t* g = grad_q + p * q_plane + r * q_w + c;
    grad_x[i] = static_cast<scalar_t>(acc_t(0.25) * (g[0] + g[1] + g[q_w] + g[q_w + 1]));
  }
}

template <typename F>
void with_index_type(int64_t largest_numel, const F& f) {
  if (largest_numel <= std::numeric_limits<int32_t>::max()) {
    f(int32_t{0});
  } else {
    f(int64_t{0});
  }
}

at::Tensor swap_align2nat_forward_cuda(const at::Tensor& x_in, int64_t lambda_val, double pad_val) {
  const int64_t v_in = check_swap_align2nat_input(x_in, lambda_val);
  at::TensorArg x_arg{x_in, "x", 1};
  at::checkAllSameGPU("swap_align2nat", {x_arg});
  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const auto sizes = swap_align2nat_sizes(x_in.sizes(), v_in, lambda_val);
  const int64_t h_in = sizes.h_in, w_in = sizes.w_in, h_out = sizes.h_out, w_out = sizes.w_out;
  auto y = at::empty(sizes.output_shape(), x_in.options());
  if (y.numel() == 0) {
    return y;
  }
  const at::Tensor x = x_in.contiguous();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t total = y.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "swap_align2nat_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        with_index_type(std::max(total, x.numel()), [&](auto index_zero) {
          using index_t = decltype(index_zero);
          forward_kernel<scalar_t, index_t><<<num_blocks(total), kThreads, 0, stream>>>(
              total, x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), v_in,
              lambda_val, h_in, w_in, h_out, w_out, static_cast<acc_t>(pad_val));
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
  return y;
}

at::Tensor swap_align2nat_backward_cuda(
    const at::Tensor& grad_output_in,
    int64_t lambda_val,
    c10::IntArrayRef input_size) {
  check_swap_align2nat_input_size(input_size);
  at::TensorArg g_arg{grad_output_in, "grad_output", 1};
  at::checkAllSameGPU("swap_align2nat_backward", {g_arg});
  const c10::cuda::CUDAGuard device_guard(grad_output_in.device());
  auto grad_input = at::empty(input_size, grad_output_in.options());
  const auto sizes = check_swap_align2nat_backward(grad_output_in, grad_input, lambda_val);
  const int64_t batch = sizes.batch, v_in = sizes.v_in, h_in = sizes.h_in, w_in = sizes.w_in;
  const int64_t v_out = sizes.v_out, h_out = sizes.h_out, w_out = sizes.w_out;
  if (grad_input.numel() == 0 || grad_output_in.numel() == 0) {
    return grad_input.zero_();
  }
  const at::Tensor grad_output = grad_output_in.contiguous();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const bool box = v_out % 2 == 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(), "swap_align2nat_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const int64_t planes = batch * v_in * v_in;
        if (!box) {
          // Q is the input itself: its gradient is the input gradient.
          const int64_t total = grad_input.numel();
          with_index_type(std::max(total, grad_output.numel()), [&](auto index_zero) {
            using index_t = decltype(index_zero);
            grad_q_kernel<scalar_t, scalar_t, index_t><<<num_blocks(total), kThreads, 0, stream>>>(
                total, grad_output.const_data_ptr<scalar_t>(),
                grad_input.mutable_data_ptr<scalar_t>(), v_in, lambda_val, h_in, w_in, 0, h_out,
                w_out);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
          return;
        }
        auto grad_q = at::empty(
            {planes, h_in + 1, w_in + 1},
            grad_output.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
        const int64_t total_q = grad_q.numel();
        with_index_type(std::max(total_q, grad_output.numel()), [&](auto index_zero) {
          using index_t = decltype(index_zero);
          grad_q_kernel<scalar_t, acc_t, index_t><<<num_blocks(total_q), kThreads, 0, stream>>>(
              total_q, grad_output.const_data_ptr<scalar_t>(), grad_q.mutable_data_ptr<acc_t>(),
              v_in, lambda_val, h_in + 1, w_in + 1, -1, h_out, w_out);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          const int64_t total = grad_input.numel();
          box_adjoint_kernel<scalar_t, index_t><<<num_blocks(total), kThreads, 0, stream>>>(
              total, grad_q.const_data_ptr<acc_t>(), grad_input.mutable_data_ptr<scalar_t>(),
              h_in, w_in);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
  return grad_input;
}

} // namespace

TORCH_LIBRARY_IMPL(tensormask_proj, CUDA, m) {
  m.impl("swap_align2nat", &swap_align2nat_forward_cuda);
  m.impl("swap_align2nat_backward", &swap_align2nat_backward_cuda);
}

} // namespace tensormask_proj
