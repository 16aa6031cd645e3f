// CPU kernels of swap_align2nat (forward and backward), multithreaded with at::parallel_for.
//
// Two implementations, chosen by kernel_choice() (swap_align2nat.h):
//  * the shared element functions (swap_align2nat_elements.h through the drivers of
//    swap_align2nat_drivers.h), exactly what the CUDA kernels run: KernelChoice::kShared and
//    kTiled. The tests run every case with them, so that CPU test runs check the CUDA code.
//  * row kernels, faster on a CPU, used by default (below). Their cost is proportional to the
//    output size whatever lambda: the spatial interpolation is folded into a "Q" map of the
//    input's size, so each output element is a 4-term weighted sum of Q, and no up-sampled
//    intermediate is ever materialised. A task owns output window rows (n, v), whose output
//    planes (v, u) are contiguous in memory and read neighbouring columns of the same Q rows.
//    When Q is a box average, the rows are grouped by the two input window rows they read, and a
//    task computes Q for just those (a few MB that stay in cache) instead of the whole map. The
//    backward is deterministic: each task owns one input plane and gathers (as a scatter into its
//    own buffer) the contributions of the at most 4 * (lambda + 1)^2 output planes that read it.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../swap_align2nat_drivers.h"
#include "q_adjoint.h"
#include "run_elements.h"

namespace tensormask_proj {
namespace {

using geometry::floor_div;
using geometry::spatial_offset;
using geometry::window_corners;

inline int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// Q's domain along one spatial axis: indices [origin, origin + size) of the input grid.
struct QAxis {
  int64_t origin;
  int64_t size;
};

// Output columns x in [lo, hi) whose source column x * lambda + offset lies in Q's domain.
inline void valid_output_range(
    const QAxis& q,
    int64_t offset,
    int64_t lambda_val,
    int64_t out_size,
    int64_t* lo,
    int64_t* hi) {
  *lo = std::clamp<int64_t>(ceil_div(q.origin - offset, lambda_val), 0, out_size);
  *hi = std::clamp<int64_t>(ceil_div(q.origin + q.size - offset, lambda_val), *lo, out_size);
}

// Q = 2x2 box average of one input plane with pad outside, over rows and columns [-1, H-1]:
// Q[r][c] = (X[r][c] + X[r+1][c] + X[r][c+1] + X[r+1][c+1]) / 4. Stored with origin -1.
template <typename scalar_t, typename acc_t>
void box_filter_plane(
    const scalar_t* x,
    acc_t* q,
    int64_t height,
    int64_t width,
    acc_t pad,
    std::vector<acc_t>& column_sums) {
  const int64_t q_width = width + 1;
  column_sums.resize(width + 2);
  acc_t* sums = column_sums.data() + 1;  // sums[c] for c in [-1, width]
  sums[-1] = sums[width] = 2 * pad;
  for (int64_t qr = 0; qr <= height; ++qr) {
    const int64_t r = qr - 1;
    const scalar_t* top = r >= 0 ? x + r * width : nullptr;
    const scalar_t* bottom = r + 1 < height ? x + (r + 1) * width : nullptr;
    for (int64_t c = 0; c < width; ++c) {
      sums[c] =
          (top ? static_cast<acc_t>(top[c]) : pad) + (bottom ? static_cast<acc_t>(bottom[c]) : pad);
    }
    acc_t* q_row = q + qr * q_width;
    for (int64_t qc = 0; qc < q_width; ++qc) {
      q_row[qc] = acc_t(0.25) * (sums[qc - 1] + sums[qc]);
    }
  }
}

// out[x] = base + sum_k w[k] * src[k][x * STRIDE] for x in [0, n) (STRIDE == 0: runtime stride).
// One pass per output row with the corner count and the common strides known at compile time,
// so that the lambda == 1 rows vectorise.
template <int NUM_CORNERS, int STRIDE, typename scalar_t, typename acc_t, typename q_t>
inline void blend_row(
    scalar_t* out, const q_t* const* src, const acc_t* w, acc_t base, int64_t n, int64_t stride) {
  const int64_t s = STRIDE > 0 ? STRIDE : stride;
  for (int64_t x = 0; x < n; ++x) {
    acc_t value = base;
    for (int k = 0; k < NUM_CORNERS; ++k) {
      value += w[k] * static_cast<acc_t>(src[k][x * s]);
    }
    out[x] = static_cast<scalar_t>(value);
  }
}

template <int STRIDE, typename scalar_t, typename acc_t, typename q_t>
inline void blend_row_any(
    int num_corners,
    scalar_t* out,
    const q_t* const* src,
    const acc_t* w,
    acc_t base,
    int64_t n,
    int64_t stride) {
  switch (num_corners) {
    case 0:
      return blend_row<0, STRIDE>(out, src, w, base, n, stride);
    case 1:
      return blend_row<1, STRIDE>(out, src, w, base, n, stride);
    case 2:
      return blend_row<2, STRIDE>(out, src, w, base, n, stride);
    case 3:
      return blend_row<3, STRIDE>(out, src, w, base, n, stride);
    default:
      return blend_row<4, STRIDE>(out, src, w, base, n, stride);
  }
}

template <int STRIDE, typename acc_t, typename scalar_t>
inline void strided_scatter(acc_t* dst, const scalar_t* src, acc_t w, int64_t n, int64_t stride) {
  const int64_t s = STRIDE > 0 ? STRIDE : stride;
  for (int64_t x = 0; x < n; ++x) {
    dst[x * s] += w * static_cast<acc_t>(src[x]);
  }
}

// Computes output window row v of image n: the planes (n, v, u, :, :) for every u. `plane(vi,
// uj)` returns Q's plane for input window cell (vi, uj) of image n (only called in range).
template <typename scalar_t, typename acc_t, typename q_t, typename PlaneFn>
void forward_window_row(
    int64_t n,
    int64_t v,
    const PlaneFn& plane,
    QAxis q_rows,
    QAxis q_cols,
    scalar_t* y,
    int64_t v_in,
    int64_t lambda_val,
    int64_t h_out,
    int64_t w_out,
    acc_t pad) {
  const int64_t v_out = v_in * lambda_val;
  const int64_t out_plane = h_out * w_out;
  const auto wv = window_corners<acc_t>(v, lambda_val);
  const int64_t row_offset = spatial_offset(v, v_out);
  for (int64_t u = 0; u < v_out; ++u) {
    const auto wu = window_corners<acc_t>(u, lambda_val);
    const int64_t col_offset = spatial_offset(u, v_out);
    // The in-range window corners: the Q plane each reads, and its weight.
    const q_t* corner_plane[4];
    acc_t corner_weight[4];
    int num_corners = 0;
    acc_t pad_weight = 0;  // total weight of window corners outside the VxV window
    for (int i = 0; i < 2; ++i) {
      const acc_t w_i = i ? wv.w1 : wv.w0;
      const int64_t vi = wv.v0 + i;
      if (w_i == acc_t(0)) {
        continue;
      }
      for (int j = 0; j < 2; ++j) {
        const acc_t w_j = j ? wu.w1 : wu.w0;
        const int64_t uj = wu.v0 + j;
        if (w_j == acc_t(0)) {
          continue;
        }
        if (vi >= 0 && vi < v_in && uj >= 0 && uj < v_in) {
          corner_plane[num_corners] = plane(vi, uj);
          corner_weight[num_corners++] = w_i * w_j;
        } else {
          pad_weight += w_i * w_j;
        }
      }
    }
    int64_t x_lo, x_hi;
    valid_output_range(q_cols, col_offset, lambda_val, w_out, &x_lo, &x_hi);
    const int64_t n_valid = x_hi - x_lo;
    const int64_t q_col0 = x_lo * lambda_val + col_offset - q_cols.origin;
    const scalar_t pad_out = static_cast<scalar_t>(pad);
    scalar_t* out = y + ((n * v_out + v) * v_out + u) * out_plane;
    for (int64_t yy = 0; yy < h_out; ++yy) {
      scalar_t* out_row = out + yy * w_out;
      const int64_t q_row = yy * lambda_val + row_offset - q_rows.origin;
      if (q_row < 0 || q_row >= q_rows.size || n_valid == 0) {
        // Every corner is outside the input: the weights sum to 1, so the value is pad.
        std::fill(out_row, out_row + w_out, pad_out);
        continue;
      }
      std::fill(out_row, out_row + x_lo, pad_out);
      std::fill(out_row + x_hi, out_row + w_out, pad_out);
      const q_t* src[4];
      for (int k = 0; k < num_corners; ++k) {
        src[k] = corner_plane[k] + q_row * q_cols.size + q_col0;
      }
      const acc_t base = pad_weight * pad;
      if (lambda_val == 1) {
        blend_row_any<1>(num_corners, out_row + x_lo, src, corner_weight, base, n_valid, 1);
      } else if (lambda_val == 2) {
        blend_row_any<2>(num_corners, out_row + x_lo, src, corner_weight, base, n_valid, 2);
      } else {
        blend_row_any<0>(
            num_corners, out_row + x_lo, src, corner_weight, base, n_valid, lambda_val);
      }
    }
  }
}

at::Tensor forward_rows(const at::Tensor& x_in, int64_t lambda_val, double pad_val) {
  const int64_t v_in = check_swap_align2nat_input(x_in, lambda_val);
  const auto sizes = swap_align2nat_sizes(x_in.sizes(), v_in, lambda_val);
  const int64_t batch = sizes.batch, h_in = sizes.h_in, w_in = sizes.w_in;
  const int64_t v_out = sizes.v_out, h_out = sizes.h_out, w_out = sizes.w_out;
  auto y = at::empty(sizes.output_shape(), x_in.options());
  if (y.numel() == 0) {
    return y;
  }
  const at::Tensor x = x_in.contiguous();
  const bool box = v_out % 2 == 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "swap_align2nat_forward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const acc_t pad = static_cast<acc_t>(pad_val);
        scalar_t* y_data = y.mutable_data_ptr<scalar_t>();
        const scalar_t* x_data = x.const_data_ptr<scalar_t>();
        const int64_t x_plane = h_in * w_in;
        if (!box) {
          // Vout odd: integer spatial coordinates, Q is the input itself. One task per output
          // window row (n, v).
          const int64_t grain =
              std::max<int64_t>(1, 32768 / std::max<int64_t>(1, v_out * h_out * w_out));
          at::parallel_for(0, batch * v_out, grain, [&](int64_t begin, int64_t end) {
            for (int64_t nv = begin; nv < end; ++nv) {
              const int64_t n = nv / v_out;
              const auto plane = [&](int64_t vi, int64_t uj) {
                return x_data + ((n * v_in + vi) * v_in + uj) * x_plane;
              };
              forward_window_row<scalar_t, acc_t, scalar_t>(
                  n,
                  nv % v_out,
                  plane,
                  {0, h_in},
                  {0, w_in},
                  y_data,
                  v_in,
                  lambda_val,
                  h_out,
                  w_out,
                  pad);
            }
          });
          return;
        }
        // Vout even: Q is the 2x2 box average. Output window rows are grouped by their lower
        // window corner c (rows v with v0(v) == c read input window rows c and c + 1 only); a
        // task computes Q for those two input window rows into its own small buffers, which
        // stay in cache, then every output row of the group. Q is never materialised whole.
        const int64_t groups = v_in + 1;  // c in [-1, v_in - 1]
        const int64_t q_plane = (h_in + 1) * (w_in + 1);
        // A task: Q of two window rows, then about lambda output window rows.
        const int64_t task_work = 2 * v_in * q_plane + lambda_val * v_out * h_out * w_out;
        at::parallel_for(0, batch * groups, grain_for(task_work), [&](int64_t begin, int64_t end) {
          std::vector<acc_t> column_sums;
          std::vector<acc_t> q_window_rows(2 * v_in * q_plane);
          for (int64_t task = begin; task < end; ++task) {
            const int64_t n = task / groups;
            const int64_t c = task % groups - 1;
            int64_t v_begin, v_end;
            geometry::cells_with_lower_corner<acc_t>(c, lambda_val, v_out, &v_begin, &v_end);
            if (v_begin == v_end) {
              continue;
            }
            for (int64_t k = 0; k < 2; ++k) {
              const int64_t vi = c + k;
              if (vi < 0 || vi >= v_in) {
                continue;  // out of the window: read as pad by forward_window_row
              }
              for (int64_t uj = 0; uj < v_in; ++uj) {
                box_filter_plane(
                    x_data + ((n * v_in + vi) * v_in + uj) * x_plane,
                    q_window_rows.data() + (k * v_in + uj) * q_plane,
                    h_in,
                    w_in,
                    pad,
                    column_sums);
              }
            }
            const auto plane = [&](int64_t vi, int64_t uj) {
              return q_window_rows.data() + ((vi - c) * v_in + uj) * q_plane;
            };
            for (int64_t v = v_begin; v < v_end; ++v) {
              forward_window_row<scalar_t, acc_t, acc_t>(
                  n,
                  v,
                  plane,
                  {-1, h_in + 1},
                  {-1, w_in + 1},
                  y_data,
                  v_in,
                  lambda_val,
                  h_out,
                  w_out,
                  pad);
            }
          }
        });
      });
  return y;
}

at::Tensor backward_rows(
    const at::Tensor& grad_output_in, int64_t lambda_val, c10::IntArrayRef input_size) {
  check_swap_align2nat_input_size(input_size);
  // Every element is written below (planes no output reads get 0).
  auto grad_input = at::empty(input_size, grad_output_in.options());
  const auto sizes = check_swap_align2nat_backward(grad_output_in, grad_input, lambda_val);
  const int64_t batch = sizes.batch, v_in = sizes.v_in, h_in = sizes.h_in, w_in = sizes.w_in;
  const int64_t v_out = sizes.v_out, h_out = sizes.h_out, w_out = sizes.w_out;
  if (grad_input.numel() == 0 || grad_output_in.numel() == 0) {
    return grad_input.zero_();
  }
  const at::Tensor grad_output = grad_output_in.contiguous();
  const bool box = v_out % 2 == 0;
  const QAxis q_rows = box ? QAxis{-1, h_in + 1} : QAxis{0, h_in};
  const QAxis q_cols = box ? QAxis{-1, w_in + 1} : QAxis{0, w_in};
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(), "swap_align2nat_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* gy = grad_output.const_data_ptr<scalar_t>();
        scalar_t* gx = grad_input.mutable_data_ptr<scalar_t>();
        const int64_t out_plane = h_out * w_out;
        // A task: one input plane, read by about 4 lambda^2 output planes.
        const int64_t task_work =
            q_rows.size * q_cols.size + 4 * v_out * v_out * out_plane / (v_in * v_in);
        at::parallel_for(
            0, batch * v_in * v_in, grain_for(task_work), [&](int64_t begin, int64_t end) {
              std::vector<acc_t> gq(q_rows.size * q_cols.size);
              for (int64_t p = begin; p < end; ++p) {
                const int64_t n = p / (v_in * v_in);
                const int64_t vi = (p / v_in) % v_in;
                const int64_t uj = p % v_in;
                std::fill(gq.begin(), gq.end(), acc_t(0));
                // Output window cells v read this input plane as their corner i (v0 + i == vi).
                for (int i = 0; i < 2; ++i) {
                  int64_t v_begin, v_end;
                  geometry::cells_with_lower_corner<acc_t>(
                      vi - i, lambda_val, v_out, &v_begin, &v_end);
                  for (int64_t v = v_begin; v < v_end; ++v) {
                    const auto wv = window_corners<acc_t>(v, lambda_val);
                    const acc_t w_i = i ? wv.w1 : wv.w0;
                    if (w_i == acc_t(0)) {
                      continue;
                    }
                    const int64_t row_offset = spatial_offset(v, v_out);
                    for (int j = 0; j < 2; ++j) {
                      int64_t u_begin, u_end;
                      geometry::cells_with_lower_corner<acc_t>(
                          uj - j, lambda_val, v_out, &u_begin, &u_end);
                      for (int64_t u = u_begin; u < u_end; ++u) {
                        const auto wu = window_corners<acc_t>(u, lambda_val);
                        const acc_t w = w_i * (j ? wu.w1 : wu.w0);
                        if (w == acc_t(0)) {
                          continue;
                        }
                        const int64_t col_offset = spatial_offset(u, v_out);
                        int64_t x_lo, x_hi;
                        valid_output_range(q_cols, col_offset, lambda_val, w_out, &x_lo, &x_hi);
                        const int64_t q_col0 = x_lo * lambda_val + col_offset - q_cols.origin;
                        const scalar_t* g_plane = gy + ((n * v_out + v) * v_out + u) * out_plane;
                        for (int64_t yy = 0; yy < h_out; ++yy) {
                          const int64_t q_row = yy * lambda_val + row_offset - q_rows.origin;
                          if (q_row < 0 || q_row >= q_rows.size) {
                            continue;
                          }
                          acc_t* dst = gq.data() + q_row * q_cols.size + q_col0;
                          const scalar_t* src = g_plane + yy * w_out + x_lo;
                          if (lambda_val == 1) {
                            strided_scatter<1>(dst, src, w, x_hi - x_lo, 1);
                          } else {
                            strided_scatter<0>(dst, src, w, x_hi - x_lo, lambda_val);
                          }
                        }
                      }
                    }
                  }
                }
                q_adjoint_plane(gq.data(), gx + p * h_in * w_in, h_in, w_in, box);
              }
            });
      });
  return grad_input;
}

}  // namespace

at::Tensor swap_align2nat_forward_cpu(const at::Tensor& x, int64_t lambda_val, double pad_val) {
  switch (kernel_choice()) {
    case KernelChoice::kDefault:
      return forward_rows(x, lambda_val, pad_val);
    case KernelChoice::kShared:
      return drivers::dense_forward(CpuRunner{}, x, lambda_val, pad_val, /*tiled=*/false);
    case KernelChoice::kTiled:
      return drivers::dense_forward(CpuRunner{}, x, lambda_val, pad_val, /*tiled=*/true);
  }
  TORCH_CHECK(false, "swap_align2nat: unknown kernel choice");
}

at::Tensor swap_align2nat_backward_cpu(
    const at::Tensor& grad_output, int64_t lambda_val, c10::IntArrayRef input_size) {
  if (kernel_choice() == KernelChoice::kDefault) {
    return backward_rows(grad_output, lambda_val, input_size);
  }
  return drivers::dense_backward(CpuRunner{}, grad_output, lambda_val, input_size);
}

TORCH_LIBRARY_IMPL(tensormask_proj, CPU, m) {
  m.impl("swap_align2nat", &swap_align2nat_forward_cpu);
  m.impl("swap_align2nat_backward", &swap_align2nat_backward_cpu);
}

}  // namespace tensormask_proj
