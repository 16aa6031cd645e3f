// CPU kernels of swap_align2nat_at (natural windows at requested positions; see
// swap_align2nat_at.h).
//
// Forward: the shared element function AtForward (swap_align2nat_elements.h), called for every
// index in at::parallel_for; the CUDA kernel runs the same function.
//
// Backward, two implementations chosen by kernel_choice() (swap_align2nat.h):
//  * the shared gather AtGradQ + BoxAdjoint (KernelChoice::kShared / kTiled), what the CUDA
//    kernel runs: a few bucket lookups per element of the map whatever the number of requests,
//    cheap on a GPU but tens of nanoseconds per element on a CPU core;
//  * by default, a scatter written for the CPU: about 4 n Vout^2 multiply-adds plus one pass
//    over the map. A task owns one plane (image, vi, uj) of the map's gradient and adds the
//    requests of that image in request order into its own Q-gradient buffer, then applies the
//    adjoint of Q: no two tasks write the same memory, and the result does not depend on the
//    thread count.
// The tests run every case with both.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../swap_align2nat_drivers.h"
#include "q_adjoint.h"
#include "run_elements.h"

namespace tensormask_proj {
namespace {

at::Tensor backward_scatter(
    const at::Tensor& grad_output_in,
    const at::Tensor& image_ids_in,
    const at::Tensor& rows_in,
    const at::Tensor& cols_in,
    int64_t lambda_val,
    c10::IntArrayRef input_size) {
  constexpr const char* op = "swap_align2nat_at_backward";
  check_swap_align2nat_input_size(input_size, op);
  auto grad_input = at::empty(input_size, grad_output_in.options());
  const int64_t v_in = check_swap_align2nat_at_backward(
      grad_output_in, grad_input, image_ids_in, rows_in, cols_in, lambda_val);
  if (grad_input.numel() == 0 || image_ids_in.numel() == 0) {
    return grad_input.zero_();
  }
  const int64_t batch = input_size[0], height = input_size[2], width = input_size[3];
  const at::Tensor image_ids = image_ids_in.contiguous();
  check_image_ids(op, image_ids, batch);
  const at::Tensor rows = rows_in.contiguous();
  const at::Tensor cols = cols_in.contiguous();
  const at::Tensor grad_output = grad_output_in.contiguous();
  // The requests of image b are by_image[image_begin[b]:image_begin[b + 1]], in request order.
  const auto sorted = image_ids.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor& by_image = std::get<1>(sorted);
  const at::Tensor image_begin =
      at::searchsorted(std::get<0>(sorted), at::arange(batch + 1, image_ids.options()));
  const auto s = elements::make_shape<int64_t>(batch, v_in, lambda_val, height, width);
  const int64_t v_out = s.v_out, half = s.half();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), op, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    // Window cells whose lower corner is c, for c in [-1, Vin - 1], and every cell's weights.
    std::vector<int64_t> cells_begin(v_in + 1), cells_end(v_in + 1);
    for (int64_t c = -1; c < v_in; ++c) {
      geometry::cells_with_lower_corner<acc_t>(
          c, lambda_val, v_out, &cells_begin[c + 1], &cells_end[c + 1]);
    }
    std::vector<acc_t> w0(v_out), w1(v_out);
    for (int64_t v = 0; v < v_out; ++v) {
      const auto corners = geometry::window_corners<acc_t>(v, lambda_val);
      w0[v] = corners.w0;
      w1[v] = corners.w1;
    }
    const scalar_t* grad_y = grad_output.const_data_ptr<scalar_t>();
    scalar_t* grad_x = grad_input.mutable_data_ptr<scalar_t>();
    const int64_t* order = by_image.const_data_ptr<int64_t>();
    const int64_t* begin_of = image_begin.const_data_ptr<int64_t>();
    const int64_t* row_data = rows.const_data_ptr<int64_t>();
    const int64_t* col_data = cols.const_data_ptr<int64_t>();
    // A task: one plane of the map, and about 4 lambda^2 cells of each request of its image.
    const int64_t task_work =
        s.q_h * s.q_w + 4 * lambda_val * lambda_val * image_ids.numel() / batch;
    at::parallel_for(
        0, batch * v_in * v_in, grain_for(task_work), [&](int64_t task_begin, int64_t task_end) {
          std::vector<acc_t> grad_q(s.q_h * s.q_w);
          for (int64_t p = task_begin; p < task_end; ++p) {
            const int64_t image = p / (v_in * v_in);
            const int64_t vi = (p / v_in) % v_in;
            const int64_t uj = p % v_in;
            std::fill(grad_q.begin(), grad_q.end(), acc_t(0));
            for (int64_t j = begin_of[image]; j < begin_of[image + 1]; ++j) {
              const int64_t k = order[j];
              const scalar_t* window = grad_y + k * v_out * v_out;
              // Cell (v, u) reads Q at row rows[k] + v - half, column cols[k] + u - half; the
              // cells reading plane (vi, uj) have window corners vi - a and uj - b.
              const int64_t q_row0 = row_data[k] - half - s.q_origin;
              const int64_t q_col0 = col_data[k] - half - s.q_origin;
              for (int a = 0; a < 2; ++a) {
                const int64_t v_first = std::max(cells_begin[vi - a + 1], -q_row0);
                const int64_t v_last = std::min(cells_end[vi - a + 1], s.q_h - q_row0);
                for (int64_t v = v_first; v < v_last; ++v) {
                  const acc_t w_a = a ? w1[v] : w0[v];
                  if (w_a == acc_t(0)) {
                    continue;
                  }
                  acc_t* q_row = grad_q.data() + (q_row0 + v) * s.q_w;
                  const scalar_t* window_row = window + v * v_out;
                  for (int b = 0; b < 2; ++b) {
                    const int64_t u_first = std::max(cells_begin[uj - b + 1], -q_col0);
                    const int64_t u_last = std::min(cells_end[uj - b + 1], s.q_w - q_col0);
                    const acc_t* w_b = b ? w1.data() : w0.data();
                    for (int64_t u = u_first; u < u_last; ++u) {
                      if (w_b[u] != acc_t(0)) {
                        q_row[q_col0 + u] += w_a * w_b[u] * static_cast<acc_t>(window_row[u]);
                      }
                    }
                  }
                }
              }
            }
            q_adjoint_plane(grad_q.data(), grad_x + p * height * width, height, width, s.box());
          }
        });
  });
  return grad_input;
}

}  // namespace

at::Tensor swap_align2nat_at_forward_cpu(
    const at::Tensor& x,
    const at::Tensor& image_ids,
    const at::Tensor& rows,
    const at::Tensor& cols,
    int64_t lambda_val,
    double pad_val) {
  return drivers::at_forward(CpuRunner{}, x, image_ids, rows, cols, lambda_val, pad_val);
}

at::Tensor swap_align2nat_at_backward_cpu(
    const at::Tensor& grad_output,
    const at::Tensor& image_ids,
    const at::Tensor& rows,
    const at::Tensor& cols,
    int64_t lambda_val,
    c10::IntArrayRef input_size) {
  if (kernel_choice() == KernelChoice::kDefault) {
    return backward_scatter(grad_output, image_ids, rows, cols, lambda_val, input_size);
  }
  return drivers::at_backward(
      CpuRunner{}, grad_output, image_ids, rows, cols, lambda_val, input_size);
}

TORCH_LIBRARY_IMPL(tensormask_proj, CPU, m) {
  m.impl("swap_align2nat_at", &swap_align2nat_at_forward_cpu);
  m.impl("swap_align2nat_at_backward", &swap_align2nat_at_backward_cpu);
}

}  // namespace tensormask_proj
