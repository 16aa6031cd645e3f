// The host side of every kernel of swap_align2nat and swap_align2nat_at, written once for both
// devices: argument checks, allocation, dtype and index-type dispatch, and the passes of each op
// over the element functions of swap_align2nat_elements.h. Each driver takes a Runner, the only
// device-specific part:
//   run.elements(index_t total, const F& f)  calls f(i) for every i in [0, total);
//   run.tiles(const Tiles& tiles)            runs every tile of a DenseForwardTiles.
// CpuRunner (cpu/run_elements.h) uses at::parallel_for, CudaRunner (cuda/run_elements.cuh)
// launches grid-stride kernels on the current stream. Device checks (same GPU, device guard)
// stay in the CUDA entry points.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <algorithm>
#include <limits>
#include <type_traits>

#include "swap_align2nat_at.h"
#include "swap_align2nat_elements.h"

namespace tensormask_proj {
namespace drivers {

// Calls f(index_t{0}) with int32_t when every index below largest_numel fits (faster on CUDA),
// else int64_t.
template <typename F>
void with_index_type(int64_t largest_numel, const F& f) {
  if (largest_numel <= std::numeric_limits<int32_t>::max()) {
    f(int32_t{0});
  } else {
    f(int64_t{0});
  }
}

// The window corners of cells [0, Vout) (elements::FillWindowTable), on the device of `like`, as
// a byte tensor that holds the table the kernels read.
template <typename acc_t, typename Runner>
at::Tensor window_table(
    const Runner& run, int64_t v_out, int64_t lambda_val, const at::Tensor& like) {
  using Corners = geometry::WindowCorners<acc_t>;
  at::Tensor table =
      at::empty({v_out * static_cast<int64_t>(sizeof(Corners))}, like.options().dtype(at::kByte));
  run.elements(
      v_out,
      elements::FillWindowTable<acc_t>{
          reinterpret_cast<Corners*>(table.mutable_data_ptr()), lambda_val});
  return table;
}

template <typename acc_t>
elements::WindowTable<acc_t> table_data(const at::Tensor& table) {
  return reinterpret_cast<elements::WindowTable<acc_t>>(table.const_data_ptr());
}

// The input gradient from a GradQ kernel: `make_grad_q(out)` returns the functor that writes
// dL/dQ to `out`. With Vout odd Q is X and it writes dL/dX directly; with Vout even it writes an
// acc_t buffer over Q's domain, and BoxAdjoint turns it into dL/dX.
template <typename scalar_t, typename index_t, typename Runner, typename MakeGradQ>
void backward_through_q(
    const Runner& run,
    at::Tensor& grad_input,
    const elements::DenseShape<index_t>& s,
    const MakeGradQ& make_grad_q) {
  using acc_t = at::opmath_type<scalar_t>;
  scalar_t* grad_x = grad_input.mutable_data_ptr<scalar_t>();
  if (!s.box()) {
    run.elements(static_cast<index_t>(grad_input.numel()), make_grad_q(grad_x));
    return;
  }
  const at::Tensor grad_q = at::empty(
      {static_cast<int64_t>(s.batch) * s.v_in * s.v_in, s.q_h, s.q_w},
      grad_input.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
  run.elements(static_cast<index_t>(grad_q.numel()), make_grad_q(grad_q.mutable_data_ptr<acc_t>()));
  run.elements(
      static_cast<index_t>(grad_input.numel()),
      elements::BoxAdjoint<scalar_t, index_t>{
          grad_q.const_data_ptr<acc_t>(),
          grad_x,
          s.h_in,
          s.w_in,
          elements::Divider<index_t>(s.h_in),
          elements::Divider<index_t>(s.w_in)});
}

// Elements of dL/dQ over Q's domain (at most), for the index-type choice.
inline int64_t q_numel(int64_t batch, int64_t v_in, int64_t h_in, int64_t w_in) {
  return batch * v_in * v_in * (h_in + 1) * (w_in + 1);
}

template <typename index_t>
elements::DenseShape<index_t> shape_of(const SwapAlign2NatSizes& s, int64_t lambda_val) {
  return elements::make_shape<index_t>(s.batch, s.v_in, lambda_val, s.h_in, s.w_in);
}

template <typename Runner>
at::Tensor dense_forward(
    const Runner& run, const at::Tensor& x_in, int64_t lambda_val, double pad_val, bool tiled) {
  const int64_t v_in = check_swap_align2nat_input(x_in, lambda_val);
  const auto sizes = swap_align2nat_sizes(x_in.sizes(), v_in, lambda_val);
  auto y = at::empty(sizes.output_shape(), x_in.options());
  if (y.numel() == 0) {
    return y;
  }
  const at::Tensor x = x_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "swap_align2nat", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto pad = static_cast<acc_t>(pad_val);
    const at::Tensor window = window_table<acc_t>(run, sizes.v_out, lambda_val, x);
    // A tile count can reach twice the output size (tiles of one cell at lambda == 1).
    with_index_type(std::max(2 * y.numel(), x.numel()), [&](auto index_zero) {
      using index_t = decltype(index_zero);
      const auto s = shape_of<index_t>(sizes, lambda_val);
      const scalar_t* x_data = x.const_data_ptr<scalar_t>();
      scalar_t* y_data = y.mutable_data_ptr<scalar_t>();
      const auto tiles =
          elements::make_dense_forward_tiles(x_data, y_data, table_data<acc_t>(window), s, pad);
      // A tile's stage must fit the 48 KB of shared memory a CUDA block gets without
      // opting in; it does up to lambda = 1024 (double) and is checked on both devices alike.
      const bool stage_fits = 4 * tiles.stage_capacity * sizeof(acc_t) <= 48 * 1024;
      if (tiled && stage_fits) {
        run.tiles(tiles);
      } else {
        run.elements(
            static_cast<index_t>(y.numel()),
            elements::DenseForward<scalar_t, index_t>{
                x_data, y_data, table_data<acc_t>(window), s, pad});
      }
    });
  });
  return y;
}

template <typename Runner>
at::Tensor dense_backward(
    const Runner& run,
    const at::Tensor& grad_output_in,
    int64_t lambda_val,
    c10::IntArrayRef input_size) {
  check_swap_align2nat_input_size(input_size);
  auto grad_input = at::empty(input_size, grad_output_in.options());
  const auto sizes = check_swap_align2nat_backward(grad_output_in, grad_input, lambda_val);
  if (grad_input.numel() == 0 || grad_output_in.numel() == 0) {
    return grad_input.zero_();
  }
  const at::Tensor grad_output = grad_output_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(), "swap_align2nat_backward", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* grad_y = grad_output.const_data_ptr<scalar_t>();
        const at::Tensor window = window_table<acc_t>(run, sizes.v_out, lambda_val, grad_output);
        const int64_t largest =
            std::max(q_numel(sizes.batch, sizes.v_in, sizes.h_in, sizes.w_in), grad_output.numel());
        with_index_type(largest, [&](auto index_zero) {
          using index_t = decltype(index_zero);
          const auto s = shape_of<index_t>(sizes, lambda_val);
          backward_through_q<scalar_t, index_t>(run, grad_input, s, [&](auto* out) {
            using out_t = std::remove_pointer_t<decltype(out)>;
            return elements::DenseGradQ<scalar_t, out_t, index_t>{
                grad_y, out, table_data<acc_t>(window), s};
          });
        });
      });
  return grad_input;
}

// DenseShape of a swap_align2nat_at call on a map of shape (N, Vin^2, H, W).
template <typename index_t>
elements::DenseShape<index_t> at_shape(
    c10::IntArrayRef map_size, int64_t v_in, int64_t lambda_val) {
  return elements::make_shape<index_t>(map_size[0], v_in, lambda_val, map_size[2], map_size[3]);
}

template <typename Runner>
at::Tensor at_forward(
    const Runner& run,
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
  check_image_ids(op, image_ids, x_in.size(0));
  const at::Tensor x = x_in.contiguous();
  const int64_t largest =
      std::max({y.numel(), x.numel(), x.size(2) + 3 * v_out + 8, x.size(3) + 3 * v_out + 8});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), op, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor window = window_table<acc_t>(run, v_out, lambda_val, x);
    with_index_type(largest, [&](auto index_zero) {
      using index_t = decltype(index_zero);
      run.elements(
          static_cast<index_t>(y.numel()),
          elements::AtForward<scalar_t, index_t>{
              x.const_data_ptr<scalar_t>(),
              image_ids.const_data_ptr<int64_t>(),
              rows.const_data_ptr<int64_t>(),
              cols.const_data_ptr<int64_t>(),
              y.mutable_data_ptr<scalar_t>(),
              table_data<acc_t>(window),
              at_shape<index_t>(x.sizes(), v_in, lambda_val),
              static_cast<acc_t>(pad_val)});
    });
  });
  return y;
}

template <typename Runner>
at::Tensor at_backward(
    const Runner& run,
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
  const at::Tensor image_ids = image_ids_in.contiguous();
  const at::Tensor rows = rows_in.contiguous();
  const at::Tensor cols = cols_in.contiguous();
  check_image_ids(op, image_ids, input_size[0]);
  const auto shape = at_shape<int64_t>(input_size, v_in, lambda_val);
  const RequestBuckets buckets = bucket_requests(image_ids, rows, cols, shape);
  if (buckets.residues.numel() == 0) {
    return grad_input.zero_();  // every window reads pad only
  }
  const at::Tensor grad_output = grad_output_in.contiguous();
  const int64_t largest = std::max(
      {q_numel(input_size[0], v_in, input_size[2], input_size[3]),
       buckets.offsets.numel(),
       grad_output.numel()});
  // The window gradients in bucket order, cell-major: grad_by_cell[v][u][j] is the gradient of
  // cell (v, u) of request order[j]. In request order, the requests of neighbouring centres are
  // scattered over the whole gradient and every read of the gather missed the cache.
  const at::Tensor grad_by_cell =
      grad_output.index_select(0, buckets.order).permute({1, 2, 0}).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(), op, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* grad_data = grad_by_cell.const_data_ptr<scalar_t>();
    const auto view = buckets.view();
    const at::Tensor window = window_table<acc_t>(run, shape.v_out, lambda_val, grad_output);
    with_index_type(largest, [&](auto index_zero) {
      using index_t = decltype(index_zero);
      const auto s = at_shape<index_t>(input_size, v_in, lambda_val);
      const auto n = static_cast<index_t>(image_ids.numel());
      backward_through_q<scalar_t, index_t>(run, grad_input, s, [&](auto* out) {
        using out_t = std::remove_pointer_t<decltype(out)>;
        return elements::AtGradQ<scalar_t, out_t, index_t>{
            grad_data, n, out, view, table_data<acc_t>(window), s};
      });
    });
  });
  return grad_input;
}

}  // namespace drivers
}  // namespace tensormask_proj
