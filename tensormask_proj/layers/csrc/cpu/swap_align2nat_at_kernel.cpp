// CPU kernels of swap_align2nat_at (natural windows at requested positions; see
// swap_align2nat_at.h).
//
// Forward: tasks own requests; every window cell is the weighted sum of the corners visited by
// geometry::visit_natural_cell. Backward: the adjoint, deterministic: a task owns one image's
// gradient and adds its requests' contributions in request order, so the summation order never
// depends on the thread count.
#include "../swap_align2nat_at.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

namespace tensormask_proj {
namespace {

// Image ids index the map: checked before any parallel region (an error must not be raised
// from inside one).
void check_image_ids(const char* op, const at::Tensor& image_ids, int64_t batch) {
  const int64_t* ids = image_ids.const_data_ptr<int64_t>();
  for (int64_t k = 0; k < image_ids.numel(); ++k) {
    TORCH_CHECK(
        ids[k] >= 0 && ids[k] < batch,
        op,
        ": image_ids[",
        k,
        "] = ",
        ids[k],
        " is out of range for a map of ",
        batch,
        " images");
  }
}

} // namespace

at::Tensor swap_align2nat_at_forward_cpu(
    const at::Tensor& x_in,
    const at::Tensor& image_ids_in,
    const at::Tensor& rows_in,
    const at::Tensor& cols_in,
    int64_t lambda_val,
    double pad_val) {
  constexpr const char* op = "swap_align2nat_at";
  const int64_t v_in = check_swap_align2nat_input(x_in, lambda_val, op);
  const int64_t n = check_swap_align2nat_at_requests(op, x_in, image_ids_in, rows_in, cols_in);
  const int64_t v_out = v_in * lambda_val;
  auto y = at::empty({n, v_out, v_out}, x_in.options());
  if (y.numel() == 0) {
    return y;
  }
  const at::Tensor image_ids = image_ids_in.contiguous();
  const at::Tensor rows = rows_in.contiguous();
  const at::Tensor cols = cols_in.contiguous();
  const int64_t batch = x_in.size(0), height = x_in.size(2), width = x_in.size(3);
  check_image_ids(op, image_ids, batch);
  const at::Tensor x = x_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), op, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t pad = static_cast<acc_t>(pad_val);
    const scalar_t* x_data = x.const_data_ptr<scalar_t>();
    scalar_t* y_data = y.mutable_data_ptr<scalar_t>();
    const int64_t* ids = image_ids.const_data_ptr<int64_t>();
    const int64_t* row_data = rows.const_data_ptr<int64_t>();
    const int64_t* col_data = cols.const_data_ptr<int64_t>();
    const int64_t image_numel = v_in * v_in * height * width;
    const int64_t grain = std::max<int64_t>(1, 4096 / (v_out * v_out));
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const scalar_t* image = x_data + ids[k] * image_numel;
        scalar_t* window = y_data + k * v_out * v_out;
        for (int64_t v = 0; v < v_out; ++v) {
          for (int64_t u = 0; u < v_out; ++u) {
            acc_t value = 0;
            geometry::visit_natural_cell<acc_t>(
                v, u, row_data[k], col_data[k], v_in, lambda_val, height, width,
                [&](bool inside, int64_t plane, int64_t row, int64_t col, acc_t weight) {
                  value += weight *
                      (inside ? static_cast<acc_t>(image[(plane * height + row) * width + col])
                              : pad);
                });
            window[v * v_out + u] = static_cast<scalar_t>(value);
          }
        }
      }
    });
  });
  return y;
}

at::Tensor swap_align2nat_at_backward_cpu(
    const at::Tensor& grad_output_in,
    const at::Tensor& image_ids_in,
    const at::Tensor& rows_in,
    const at::Tensor& cols_in,
    int64_t lambda_val,
    c10::IntArrayRef input_size) {
  constexpr const char* op = "swap_align2nat_at_backward";
  check_swap_align2nat_input_size(input_size, op);
  // Accumulated in the op math type (float for half/bfloat16), cast at the end.
  const auto acc_type = at::toOpMathType(grad_output_in.scalar_type());
  auto grad_acc = at::zeros(input_size, grad_output_in.options().dtype(acc_type));
  const int64_t v_in = check_swap_align2nat_at_backward(
      grad_output_in, grad_acc, image_ids_in, rows_in, cols_in, lambda_val);
  const int64_t n = image_ids_in.size(0);
  const int64_t v_out = v_in * lambda_val;
  const int64_t batch = input_size[0], height = input_size[2], width = input_size[3];
  if (grad_acc.numel() == 0 || n == 0) {
    return grad_acc.to(grad_output_in.scalar_type());
  }
  const at::Tensor image_ids = image_ids_in.contiguous();
  const at::Tensor rows = rows_in.contiguous();
  const at::Tensor cols = cols_in.contiguous();
  check_image_ids(op, image_ids, batch);
  const at::Tensor grad_output = grad_output_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), op, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* g_data = grad_output.const_data_ptr<scalar_t>();
    acc_t* gx_data = grad_acc.mutable_data_ptr<acc_t>();
    const int64_t* ids = image_ids.const_data_ptr<int64_t>();
    const int64_t* row_data = rows.const_data_ptr<int64_t>();
    const int64_t* col_data = cols.const_data_ptr<int64_t>();
    const int64_t image_numel = v_in * v_in * height * width;
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        acc_t* image = gx_data + b * image_numel;
        for (int64_t k = 0; k < n; ++k) {
          if (ids[k] != b) {
            continue;
          }
          const scalar_t* window = g_data + k * v_out * v_out;
          for (int64_t v = 0; v < v_out; ++v) {
            for (int64_t u = 0; u < v_out; ++u) {
              const acc_t g = static_cast<acc_t>(window[v * v_out + u]);
              if (g == acc_t(0)) {
                continue;
              }
              geometry::visit_natural_cell<acc_t>(
                  v, u, row_data[k], col_data[k], v_in, lambda_val, height, width,
                  [&](bool inside, int64_t plane, int64_t row, int64_t col, acc_t weight) {
                    if (inside) {
                      image[(plane * height + row) * width + col] += weight * g;
                    }
                  });
            }
          }
        }
      }
    });
  });
  return grad_acc.to(grad_output_in.scalar_type());
}

TORCH_LIBRARY_IMPL(tensormask_proj, CPU, m) {
  m.impl("swap_align2nat_at", &swap_align2nat_at_forward_cpu);
  m.impl("swap_align2nat_at_backward", &swap_align2nat_at_backward_cpu);
}

} // namespace tensormask_proj
