// swap_align2nat: kernel declarations, input checks and the geometry shared by the CPU and CUDA
// kernels (the kernels' element functions are in swap_align2nat_elements.h).
//
// Notation (see tensormask_proj/layers/swap_align2nat.py for the full description):
//   input  X: (N, Vin*Vin, Hin, Win)   aligned representation, window unit = lambda * spatial unit
//   output Y: (N, Vout*Vout, Hout, Wout) natural representation,
//             Vout = lambda * Vin, Hout = ceil(Hin / lambda), Wout = ceil(Win / lambda).
// For output element (n, v, u, y, x) the op samples X multilinearly at
//   sy = y*lambda + v - Vout/2 + 0.5,   sx = x*lambda + u - Vout/2 + 0.5   (spatial axes)
//   sv = (v + 0.5)/lambda - 0.5,        su = (u + 0.5)/lambda - 0.5        (window axes)
// with pad_val for every corner outside X (window axes included).
//
// Because lambda is an integer, the spatial coordinates are either exact integers (Vout odd) or
// exact half-integers (Vout even), and their integer part is y*lambda + (v - Vout/2). The spatial
// interpolation is therefore either the identity or a fixed 2x2 box average, the same for every
// output element. Every kernel relies on this: the spatial part reads a "Q" map, which is X
// itself (Vout odd) or X box-filtered over 2x2 with pad outside (Vout even), and the window part
// is a 2x2 bilinear interpolation over (v', u') with per-channel weights.
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace tensormask_proj {

at::Tensor swap_align2nat_forward_cpu(const at::Tensor& x, int64_t lambda_val, double pad_val);
at::Tensor swap_align2nat_backward_cpu(
    const at::Tensor& grad_output, int64_t lambda_val, c10::IntArrayRef input_size);

// Which kernels the ops run, for the whole process; set from Python with
// torch.ops.tensormask_proj._set_kernels(name) (tensormask_proj.layers.use_kernels), which the
// tests and the benchmark use.
//   kDefault  CPU: the CPU-only kernels, faster on a CPU: the dense op's row kernels
//             (cpu/swap_align2nat_kernel.cpp) and swap_align2nat_at's scatter backward
//             (cpu/swap_align2nat_at_kernel.cpp); swap_align2nat_at's forward is shared.
//             CUDA: the shared element functions, one output element per index.
//   kShared   the shared element functions (swap_align2nat_elements.h) on both devices: on the
//             CPU this runs exactly the CUDA kernels' arithmetic and indexing.
//   kTiled    as kShared, but the dense forward is the tiled kernel (DenseForwardTiles; the CPU
//             runs its tiles one after another).
enum class KernelChoice : int { kDefault = 0, kShared = 1, kTiled = 2 };
KernelChoice kernel_choice();

// Checks shared by every kernel; messages name the offending value and the op `op`. Returns the
// window size Vin.
inline int64_t check_swap_align2nat_input(
    const at::Tensor& x, int64_t lambda_val, const char* op = "swap_align2nat") {
  TORCH_CHECK(
      x.dim() == 4, op, ": expected a 4-D input (N, V*V, H, W), got a tensor of shape ", x.sizes());
  TORCH_CHECK(
      at::isFloatingType(x.scalar_type()),
      op,
      ": expected a floating-point input, got ",
      x.scalar_type());
  TORCH_CHECK(lambda_val >= 1, op, ": lambda_val must be >= 1, got ", lambda_val);
  const int64_t channels = x.size(1);
  const int64_t v = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(channels))));
  TORCH_CHECK(
      v * v == channels,
      op,
      ": the channel count must be a perfect square V*V (a VxV window), got ",
      channels,
      " channels (input shape ",
      x.sizes(),
      ")");
  return v;
}

// Output spatial size along one axis.
inline int64_t swap_align2nat_out_size(int64_t in_size, int64_t lambda_val) {
  return (in_size + lambda_val - 1) / lambda_val;
}

// Sizes of one swap_align2nat call: input (batch, v_in^2, h_in, w_in), output
// (batch, v_out^2, h_out, w_out).
struct SwapAlign2NatSizes {
  int64_t batch, v_in, h_in, w_in, v_out, h_out, w_out;

  std::vector<int64_t> output_shape() const { return {batch, v_out * v_out, h_out, w_out}; }
};

inline SwapAlign2NatSizes swap_align2nat_sizes(
    c10::IntArrayRef input_shape, int64_t v_in, int64_t lambda_val) {
  return {
      input_shape[0],
      v_in,
      input_shape[2],
      input_shape[3],
      v_in * lambda_val,
      swap_align2nat_out_size(input_shape[2], lambda_val),
      swap_align2nat_out_size(input_shape[3], lambda_val)};
}

// Checks of the backward's arguments, shared by every kernel; `grad_input` is the (allocated)
// input gradient of shape input_size.
inline SwapAlign2NatSizes check_swap_align2nat_backward(
    const at::Tensor& grad_output, const at::Tensor& grad_input, int64_t lambda_val) {
  const int64_t v_in = check_swap_align2nat_input(grad_input, lambda_val);
  const auto sizes = swap_align2nat_sizes(grad_input.sizes(), v_in, lambda_val);
  TORCH_CHECK(
      grad_output.sizes() == c10::IntArrayRef(sizes.output_shape()),
      "swap_align2nat_backward: grad_output has shape ",
      grad_output.sizes(),
      " but the forward output for input_size ",
      grad_input.sizes(),
      " and lambda_val ",
      lambda_val,
      " has shape ",
      sizes.output_shape());
  return sizes;
}

inline void check_swap_align2nat_input_size(
    c10::IntArrayRef input_size, const char* op = "swap_align2nat_backward") {
  TORCH_CHECK(input_size.size() == 4, op, ": input_size must be (N, C, H, W), got ", input_size);
}

namespace geometry {

// floor(a / b) for b > 0 and any sign of a.
C10_HOST_DEVICE inline int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (q * b > a) ? q - 1 : q;
}

// a mod b in [0, b) for b > 0 and any sign of a.
C10_HOST_DEVICE inline int64_t positive_mod(int64_t a, int64_t b) {
  const int64_t m = a % b;
  return m < 0 ? m + b : m;
}

// The two window-axis corners of output window cell `v`: cell v reads input cells v0 and v0 + 1
// with weights w0 and w1 (w0 + w1 == 1). acc_t is float for float/half/bfloat16 inputs and double
// for double: float32 reproduces the reference CUDA kernel bit for bit.
template <typename acc_t>
struct WindowCorners {
  int64_t v0;
  acc_t w0;
  acc_t w1;
};

template <typename acc_t>
C10_HOST_DEVICE inline WindowCorners<acc_t> window_corners(int64_t v, int64_t lambda_val) {
  const acc_t sv =
      (static_cast<acc_t>(v) + acc_t(0.5)) / static_cast<acc_t>(lambda_val) - acc_t(0.5);
  const acc_t f = ::floor(sv);
  WindowCorners<acc_t> c;
  c.v0 = static_cast<int64_t>(f);
  c.w1 = sv - f;
  c.w0 = acc_t(1) - c.w1;
  return c;
}

// Spatial offset of output window cell v: output (y, v) reads Q at row y*lambda + offset(v).
C10_HOST_DEVICE inline int64_t spatial_offset(int64_t v, int64_t v_out) { return v - v_out / 2; }

// Output window cells v in [begin, end) whose lower corner v0 equals `corner`. v0 is
// non-decreasing in v: v0(v) = floor((v + 0.5) / lambda - 0.5) == corner exactly when
// lambda * (2 corner + 1) <= 2 v + 1 < lambda * (2 corner + 3), a range of lambda cells found in
// closed form (called per task by the CPU row kernels and per tile by the tiled forward). The
// bounds are then checked with exactly the arithmetic of window_corners() and moved if the float
// rounding ever disagreed (it cannot for windows shorter than 2^20 cells), so that the backward
// stays the exact adjoint of the forward.
template <typename acc_t>
C10_HOST_DEVICE inline void cells_with_lower_corner(
    int64_t corner, int64_t lambda_val, int64_t v_out, int64_t* begin, int64_t* end) {
  const auto first_at_least = [&](int64_t c) {
    // smallest v with v0(v) >= c: ceil((lambda * (2c + 1) - 1) / 2), clamped to [0, v_out]
    int64_t v = -floor_div(1 - lambda_val * (2 * c + 1), 2);
    v = v < 0 ? 0 : (v > v_out ? v_out : v);
    while (v > 0 && window_corners<acc_t>(v - 1, lambda_val).v0 >= c) {
      --v;
    }
    while (v < v_out && window_corners<acc_t>(v, lambda_val).v0 < c) {
      ++v;
    }
    return v;
  };
  *begin = first_at_least(corner);
  *end = first_at_least(corner + 1);
}

// The window cell v == t (mod lambda), 0 <= t < lambda, whose window corner `a` (0: lower,
// 1: upper) is input window cell `vi`, i.e. v0(v) == vi - a; -1 when it lies outside
// [0, v_out). Closed form: v0(t + m * lambda) = floor((2t + 1 - lambda) / (2 lambda)) + m, and
// (2t + 1 - lambda) / (2 lambda) lies in (-1/2, 1/2), so v0 = m - 1 when 2t + 1 < lambda and m
// otherwise. Each residue class holds exactly one cell per corner, which is what bounds the
// backward kernels' work per element. Callers still check window_corners(v).v0 (they need its
// weights anyway), so a float rounding of window_corners could only drop a term, never add a
// wrong one (it cannot happen for windows shorter than 2^20 cells).
C10_HOST_DEVICE inline int64_t cell_in_class_with_corner(
    int64_t t, int64_t vi, int a, int64_t lambda_val, int64_t v_out) {
  const int64_t m = vi - a + (2 * t + 1 < lambda_val ? 1 : 0);
  const int64_t v = t + m * lambda_val;
  return (v >= 0 && v < v_out) ? v : -1;
}

}  // namespace geometry
}  // namespace tensormask_proj
