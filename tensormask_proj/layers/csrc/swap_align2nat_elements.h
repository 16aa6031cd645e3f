// The element functions of every swap_align2nat / swap_align2nat_at kernel, compiled for both
// devices (C10_HOST_DEVICE). Each kernel is a functor whose operator()(i) computes and writes
// output element i; the CPU calls it for every index in at::parallel_for, the CUDA kernel from a
// grid-stride loop (cpu/run_elements.h, cuda/run_elements.cuh). So every CPU test run executes
// the CUDA kernels' arithmetic and indexing; only the launch differs.
//
// Kernels (geometry and notation: swap_align2nat.h), with the work of one element:
//   DenseForward      Y (N, Vout^2, Hout, Wout): <= 4 window corners, each one Q value (1 read of
//                     X, or the 2x2 box average of 4 reads).
//   DenseForwardTiles the same values, tile by tile: a tile stages the Q values its outputs read
//                     (the box filter built once per tile), then writes its outputs row by row.
//                     Bit-identical to DenseForward.
//   DenseGradQ        dL/dQ over Q's domain (N, Vin^2, Hq, Wq): <= 4 output gradients (per window
//                     corner a, b one cell v, u: those in the residue class of the element's row
//                     and column modulo lambda, geometry::cell_in_class_with_corner).
//   BoxAdjoint        dL/dX (N, Vin^2, H, W) from dL/dQ when Q is the 2x2 box average: 4 reads.
//                     (When Vout is odd, Q is X and the GradQ kernels write dL/dX directly.)
//   AtForward         the windows of swap_align2nat_at (n, Vout, Vout): as DenseForward.
//   AtGradQ           dL/dQ of swap_align2nat_at, a gather over requests sorted into buckets by
//                     exact window centre (RequestBucketsView). Per element: at most 4 bucket
//                     lookups per distinct centre residue (row mod lambda, col mod lambda) among
//                     the requests (2 when the centre row holds no request), plus one
//                     multiply-add per (request, window cell) that reads the element.
//                     TensorMask's requests sit on one lattice of step lambda (centres y * lambda,
//                     x * lambda of a crop), so there is one residue and the work per element is
//                     that of DenseGradQ whatever the number of requests; in general the residues
//                     are at most min(n, lambda^2).
//   FillWindowTable   each window cell's corners and weights (geometry::window_corners), read by
//                     the kernels above instead of a float division and a floor per cell.
// All backward kernels gather in a fixed order, without atomics: their results are deterministic
// and independent of the launch configuration or thread count.
#pragma once

#include <ATen/OpMathType.h>
#include <c10/macros/Macros.h>

#include <algorithm>

#include "swap_align2nat.h"

namespace tensormask_proj {
namespace elements {

// Division by a fixed positive divisor, set on the host. Integer division is the costliest
// instruction of the element functions on both devices (tens of cycles), and every index is split
// by a handful of sizes, so the int32 form is a multiply-high and a shift (Granlund & Montgomery,
// as PyTorch's IntDivider); it needs a dividend in [0, 2^31). The int64 form divides.
template <typename index_t>
struct Divider {
  index_t divisor;

  Divider() = default;
  explicit Divider(index_t d) : divisor(d) {}
  C10_HOST_DEVICE index_t div(index_t n) const { return n / divisor; }
  // n / divisor, and n % divisor in *remainder.
  C10_HOST_DEVICE index_t divmod(index_t n, index_t* remainder) const {
    const index_t q = div(n);
    *remainder = n - q * divisor;
    return q;
  }
};

template <>
struct Divider<int32_t> {
  int32_t divisor;
  uint32_t magic, shift;

  Divider() = default;
  explicit Divider(int32_t d) : divisor(d), shift(0) {
    while (shift < 31 && (uint32_t{1} << shift) < static_cast<uint32_t>(d)) {
      ++shift;
    }
    const uint64_t one = 1;
    magic = static_cast<uint32_t>(((one << 32) * ((one << shift) - d)) / d + 1);
  }
  C10_HOST_DEVICE int32_t div(int32_t n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t high = __umulhi(static_cast<uint32_t>(n), magic);
#else
    const uint32_t high =
        static_cast<uint32_t>((static_cast<uint64_t>(static_cast<uint32_t>(n)) * magic) >> 32);
#endif
    return static_cast<int32_t>((high + static_cast<uint32_t>(n)) >> shift);
  }
  C10_HOST_DEVICE int32_t divmod(int32_t n, int32_t* remainder) const {
    const int32_t q = div(n);
    *remainder = n - q * divisor;
    return q;
  }
};

// Sizes of one call in the kernels' index type (int32 when every index fits), with dividers by
// the sizes that flat indices are split by. Made on the host by make_shape().
template <typename index_t>
struct DenseShape {
  index_t batch, v_in, lambda_val, v_out, h_in, w_in, h_out, w_out;
  // Vout even: Q is the 2x2 box average over its domain of rows and columns [-1, H-1] / [-1, W-1];
  // Vout odd: Q is X over [0, H-1] / [0, W-1]. Q's domain is rows [q_origin, q_origin + q_h).
  index_t q_origin, q_h, q_w;
  Divider<index_t> by_v_in, by_lambda, by_v_out, by_h_out, by_w_out, by_q_h, by_q_w;

  C10_HOST_DEVICE bool box() const { return v_out % 2 == 0; }
  C10_HOST_DEVICE index_t half() const { return v_out / 2; }
  C10_HOST_DEVICE index_t plane_numel() const { return h_in * w_in; }
  C10_HOST_DEVICE index_t image_numel() const { return v_in * v_in * h_in * w_in; }
  // a mod lambda for a >= -lambda (the rows and columns of Q's domain plus half qualify).
  C10_HOST_DEVICE index_t mod_lambda(index_t a) const {
    index_t r;
    by_lambda.divmod(a + lambda_val, &r);
    return r;
  }
};

template <typename index_t>
inline DenseShape<index_t> make_shape(
    int64_t batch, int64_t v_in, int64_t lambda_val, int64_t h_in, int64_t w_in) {
  DenseShape<index_t> s;
  s.batch = static_cast<index_t>(batch);
  s.v_in = static_cast<index_t>(v_in);
  s.lambda_val = static_cast<index_t>(lambda_val);
  s.v_out = static_cast<index_t>(v_in * lambda_val);
  s.h_in = static_cast<index_t>(h_in);
  s.w_in = static_cast<index_t>(w_in);
  s.h_out = static_cast<index_t>(swap_align2nat_out_size(h_in, lambda_val));
  s.w_out = static_cast<index_t>(swap_align2nat_out_size(w_in, lambda_val));
  s.q_origin = s.box() ? -1 : 0;
  s.q_h = s.h_in - s.q_origin;
  s.q_w = s.w_in - s.q_origin;
  // Dividers need positive divisors; a zero size means an empty loop, which never divides.
  const auto divider = [](index_t d) { return Divider<index_t>(d > 0 ? d : 1); };
  s.by_v_in = divider(s.v_in);
  s.by_lambda = divider(s.lambda_val);
  s.by_v_out = divider(s.v_out);
  s.by_h_out = divider(s.h_out);
  s.by_w_out = divider(s.w_out);
  s.by_q_h = divider(s.q_h);
  s.by_q_w = divider(s.q_w);
  return s;
}

// X at (r, c) of one input plane, or pad outside it.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE acc_t
read_or_pad(const scalar_t* plane, index_t r, index_t c, index_t height, index_t width, acc_t pad) {
  return (r >= 0 && r < height && c >= 0 && c < width) ? static_cast<acc_t>(plane[r * width + c])
                                                       : pad;
}

// Q at (r, c) of one input plane: X itself (Vout odd) or the average of X at rows r, r + 1 and
// columns c, c + 1 (Vout even), pad outside X.
template <typename acc_t, typename scalar_t, typename index_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE acc_t
q_value(const scalar_t* plane, index_t r, index_t c, const DenseShape<index_t>& s, acc_t pad) {
  if (!s.box()) {
    return read_or_pad(plane, r, c, s.h_in, s.w_in, pad);
  }
  return acc_t(0.25) * (read_or_pad(plane, r, c, s.h_in, s.w_in, pad) +
                        read_or_pad(plane, r, c + 1, s.h_in, s.w_in, pad) +
                        read_or_pad(plane, r + 1, c, s.h_in, s.w_in, pad) +
                        read_or_pad(plane, r + 1, c + 1, s.h_in, s.w_in, pad));
}

// The window corners of every cell v in [0, Vout), table[v] = window_corners(v): the element
// functions read them instead of recomputing a float division and a floor per cell.
template <typename acc_t>
using WindowTable = const geometry::WindowCorners<acc_t>*;

template <typename acc_t>
struct FillWindowTable {
  geometry::WindowCorners<acc_t>* table;
  int64_t lambda_val;

  C10_HOST_DEVICE void operator()(int64_t v) const {
    table[v] = geometry::window_corners<acc_t>(v, lambda_val);
  }
};

// Value of natural window cell (v, u): the window-axis interpolation over its (at most) 2 x 2
// window corners (vi, uj) = (v0 + a, u0 + b), skipping zero weights, with
// sample(a, b, vi, uj) the Q value of corner (vi, uj) at the cell's spatial position (called only
// for corners inside the Vin x Vin window; the others read pad). Every forward kernel sums through
// this one function, in this one order, so they agree bit for bit.
template <typename acc_t, typename index_t, typename SampleFn>
C10_HOST_DEVICE C10_ALWAYS_INLINE acc_t blend_window_corners(
    WindowTable<acc_t> window,
    index_t v,
    index_t u,
    const DenseShape<index_t>& s,
    acc_t pad,
    const SampleFn& sample) {
  const auto wv = window[v];
  const auto wu = window[u];
  acc_t acc = 0;
  for (int a = 0; a < 2; ++a) {
    const acc_t w_a = a ? wv.w1 : wv.w0;
    if (w_a == acc_t(0)) {
      continue;
    }
    const index_t vi = static_cast<index_t>(wv.v0) + a;
    for (int b = 0; b < 2; ++b) {
      const acc_t w_b = b ? wu.w1 : wu.w0;
      if (w_b == acc_t(0)) {
        continue;
      }
      const index_t uj = static_cast<index_t>(wu.v0) + b;
      const bool inside = vi >= 0 && vi < s.v_in && uj >= 0 && uj < s.v_in;
      acc += w_a * w_b * (inside ? sample(a, b, vi, uj) : pad);
    }
  }
  return acc;
}

// ---- dense op ------------------------------------------------------------------------------

// y[i], i over (N, Vout, Vout, Hout, Wout): the natural window centred at row yo * lambda,
// column xo * lambda of image n.
template <typename scalar_t, typename index_t>
struct DenseForward {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x;
  scalar_t* y;
  WindowTable<acc_t> window;
  DenseShape<index_t> s;
  acc_t pad;

  C10_HOST_DEVICE void operator()(index_t i) const {
    index_t xo, yo, u, v;
    index_t t = s.by_w_out.divmod(i, &xo);
    t = s.by_h_out.divmod(t, &yo);
    t = s.by_v_out.divmod(t, &u);
    const index_t n = s.by_v_out.divmod(t, &v);
    const scalar_t* image = x + n * s.image_numel();
    const index_t r0 = yo * s.lambda_val + v - s.half();
    const index_t c0 = xo * s.lambda_val + u - s.half();
    y[i] = static_cast<scalar_t>(
        blend_window_corners<acc_t>(window, v, u, s, pad, [&](int, int, index_t vi, index_t uj) {
          return q_value<acc_t>(image + (vi * s.v_in + uj) * s.plane_numel(), r0, c0, s, pad);
        }));
  }
};

// The tiled forward. Tile (n, v, d, yo, xb) holds output row yo of the planes (v, u) for the
// cells u whose lower window column corner is d (u in [u_begin, u_end), at most lambda cells), at
// output columns [x0, x0 + cols), x0 = xb * tile_cols. Those outputs read 4 input planes only,
// (v0(v) + a, d + b) for a, b in {0, 1}, and in each one Q row and a run of consecutive Q
// columns: Q row yo * lambda + v - half, columns xo * lambda + u - half. A tile stages these
// Q values (stage[(2a + b) * stage_cols + column], pad for planes outside the window), then
// writes its outputs (u - u_begin) * cols + (xo - x0): rows of consecutive columns. On CUDA a
// block stages into shared memory; the CPU runs the tiles one after another with a local buffer.
template <typename scalar_t, typename index_t>
struct DenseForwardTiles {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x;
  scalar_t* y;
  WindowTable<acc_t> window;
  DenseShape<index_t> s;
  acc_t pad;
  index_t tile_cols;       // output columns per tile
  index_t stage_capacity;  // staged Q values per plane, the most any tile needs

  struct Tile {
    index_t n, v, vi0, d, yo, x0, cols, u_begin, u_end, q_row, q_col0, stage_cols;
  };

  C10_HOST_DEVICE index_t column_blocks() const { return (s.w_out + tile_cols - 1) / tile_cols; }
  C10_HOST_DEVICE index_t num_tiles() const {
    return s.batch * s.v_out * (s.v_in + 1) * s.h_out * column_blocks();
  }

  C10_HOST_DEVICE Tile tile(index_t t) const {
    Tile k;
    const index_t xb = t % column_blocks();
    t /= column_blocks();
    t = s.by_h_out.divmod(t, &k.yo);
    k.d = t % (s.v_in + 1) - 1;  // lower window column corner in [-1, Vin - 1]
    t /= s.v_in + 1;
    k.n = s.by_v_out.divmod(t, &k.v);
    k.vi0 = static_cast<index_t>(window[k.v].v0);
    int64_t u_begin, u_end;
    geometry::cells_with_lower_corner<acc_t>(k.d, s.lambda_val, s.v_out, &u_begin, &u_end);
    k.u_begin = static_cast<index_t>(u_begin);
    k.u_end = static_cast<index_t>(u_end);
    k.x0 = xb * tile_cols;
    k.cols = s.w_out - k.x0 < tile_cols ? s.w_out - k.x0 : tile_cols;
    k.q_row = k.yo * s.lambda_val + k.v - s.half();
    k.q_col0 = k.x0 * s.lambda_val + k.u_begin - s.half();
    k.stage_cols = k.u_end > k.u_begin ? (k.cols - 1) * s.lambda_val + (k.u_end - k.u_begin) : 0;
    return k;
  }

  C10_HOST_DEVICE index_t stage_size(const Tile& k) const { return 4 * k.stage_cols; }

  // Staged value j: Q of plane (vi0 + a, d + b) at row q_row, column q_col0 + j % stage_cols.
  C10_HOST_DEVICE acc_t stage_value(const Tile& k, index_t j) const {
    const index_t corner = j / k.stage_cols;
    const index_t vi = k.vi0 + corner / 2;
    const index_t uj = k.d + corner % 2;
    if (vi < 0 || vi >= s.v_in || uj < 0 || uj >= s.v_in) {
      return pad;
    }
    const scalar_t* plane = x + ((k.n * s.v_in + vi) * s.v_in + uj) * s.plane_numel();
    return q_value<acc_t>(plane, k.q_row, k.q_col0 + j % k.stage_cols, s, pad);
  }

  C10_HOST_DEVICE index_t output_count(const Tile& k) const {
    return (k.u_end - k.u_begin) * k.cols;
  }

  C10_HOST_DEVICE void write_output(const Tile& k, index_t j, const acc_t* stage) const {
    const index_t u = k.u_begin + j / k.cols;
    const index_t xo = k.x0 + j % k.cols;
    const index_t column = (xo - k.x0) * s.lambda_val + (u - k.u_begin);
    const acc_t value =
        blend_window_corners<acc_t>(window, k.v, u, s, pad, [&](int a, int b, index_t, index_t) {
          return stage[(2 * a + b) * k.stage_cols + column];
        });
    y[(((k.n * s.v_out + k.v) * s.v_out + u) * s.h_out + k.yo) * s.w_out + xo] =
        static_cast<scalar_t>(value);
  }
};

// Host: the tiles of one call. About 256 outputs per tile: 256 / lambda output columns of
// lambda cells. (A first choice, to be tuned on a GPU.)
template <typename scalar_t, typename index_t>
inline DenseForwardTiles<scalar_t, index_t> make_dense_forward_tiles(
    const scalar_t* x,
    scalar_t* y,
    WindowTable<at::opmath_type<scalar_t>> window,
    const DenseShape<index_t>& s,
    at::opmath_type<scalar_t> pad) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t tile_cols = std::max<index_t>(1, std::min<index_t>(256 / s.lambda_val, s.w_out));
  index_t largest_group = 0;
  for (int64_t d = -1; d < s.v_in; ++d) {
    int64_t begin, end;
    geometry::cells_with_lower_corner<acc_t>(d, s.lambda_val, s.v_out, &begin, &end);
    largest_group = std::max<index_t>(largest_group, static_cast<index_t>(end - begin));
  }
  return {x, y, window, s, pad, tile_cols, (tile_cols - 1) * s.lambda_val + largest_group};
}

// Splits index i over Q's domain (N, Vin, Vin, Hq, Wq) into its image, window plane and Q row
// and column (the latter from q_origin).
template <typename index_t>
struct QIndex {
  index_t image, vi, uj, row, col;
};

template <typename index_t>
C10_HOST_DEVICE inline QIndex<index_t> split_q_index(index_t i, const DenseShape<index_t>& s) {
  QIndex<index_t> q;
  index_t t = s.by_q_w.divmod(i, &q.col);
  t = s.by_q_h.divmod(t, &q.row);
  t = s.by_v_in.divmod(t, &q.uj);
  q.image = s.by_v_in.divmod(t, &q.vi);
  q.row += s.q_origin;
  q.col += s.q_origin;
  return q;
}

// grad_q[i], i over Q's domain: the gradient of Q at (row, col) of plane (vi, uj) of an image.
// Output (yo, v) reads Q row yo * lambda + v - half, so the cells reading this row are
// v == row + half (mod lambda): one per window corner a (likewise columns).
template <typename scalar_t, typename out_t, typename index_t>
struct DenseGradQ {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* grad_y;
  out_t* grad_q;
  WindowTable<acc_t> window;
  DenseShape<index_t> s;

  C10_HOST_DEVICE void operator()(index_t i) const {
    const auto q = split_q_index(i, s);
    const index_t row_class = s.mod_lambda(q.row + s.half());
    const index_t col_class = s.mod_lambda(q.col + s.half());
    acc_t acc = 0;
    for (int a = 0; a < 2; ++a) {
      const index_t v = static_cast<index_t>(
          geometry::cell_in_class_with_corner(row_class, q.vi, a, s.lambda_val, s.v_out));
      if (v < 0) {
        continue;
      }
      const auto wv = window[v];
      const acc_t w_a = a ? wv.w1 : wv.w0;
      // A multiple of lambda by the choice of v: yo * lambda.
      const index_t row_offset = q.row + s.half() - v;
      if (wv.v0 != q.vi - a || w_a == acc_t(0) || row_offset < 0) {
        continue;
      }
      const index_t yo = s.by_lambda.div(row_offset);
      if (yo >= s.h_out) {
        continue;
      }
      for (int b = 0; b < 2; ++b) {
        const index_t u = static_cast<index_t>(
            geometry::cell_in_class_with_corner(col_class, q.uj, b, s.lambda_val, s.v_out));
        if (u < 0) {
          continue;
        }
        const auto wu = window[u];
        const acc_t w_b = b ? wu.w1 : wu.w0;
        const index_t col_offset = q.col + s.half() - u;
        if (wu.v0 != q.uj - b || w_b == acc_t(0) || col_offset < 0) {
          continue;
        }
        const index_t xo = s.by_lambda.div(col_offset);
        if (xo >= s.w_out) {
          continue;
        }
        acc += w_a * w_b *
               static_cast<acc_t>(
                   grad_y[(((q.image * s.v_out + v) * s.v_out + u) * s.h_out + yo) * s.w_out + xo]);
      }
    }
    grad_q[i] = static_cast<out_t>(acc);
  }
};

// grad_x[i], i over (N, Vin, Vin, H, W), when Q is the 2x2 box average: the adjoint,
// (gq[r][c] + gq[r+1][c] + gq[r][c+1] + gq[r+1][c+1]) / 4 with grad_q stored from row and
// column -1 (its indices are X's plus one).
template <typename scalar_t, typename index_t>
struct BoxAdjoint {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t* grad_q;
  scalar_t* grad_x;
  index_t h_in, w_in;
  Divider<index_t> by_h_in, by_w_in;

  C10_HOST_DEVICE void operator()(index_t i) const {
    index_t c, r;
    const index_t p = by_h_in.divmod(by_w_in.divmod(i, &c), &r);
    const index_t q_w = w_in + 1;
    const acc_t* g = grad_q + (p * (h_in + 1) + r) * q_w + c;
    grad_x[i] = static_cast<scalar_t>(acc_t(0.25) * (g[0] + g[1] + g[q_w] + g[q_w + 1]));
  }
};

// ---- swap_align2nat_at ---------------------------------------------------------------------
// Requests: window k is centred at (rows[k], cols[k]) of image image_ids[k] (image ids are
// checked on the host before any kernel runs); centres may lie anywhere.

// A window centre moved to at most Vout + 2 rows (or columns) outside the map of `size`: a
// window centred that far reads pad only, as it did, and the centre now fits the index type.
C10_HOST_DEVICE inline int64_t clamp_centre(int64_t centre, int64_t size, int64_t v_out) {
  const int64_t low = -(v_out + 2), high = size + v_out + 2;
  return centre < low ? low : (centre > high ? high : centre);
}

// y[i], i over (n, Vout, Vout): cell (v, u) of window k. index_t is int32 when the map, the
// windows and the map's size plus two windows all have fewer than 2^31 elements.
template <typename scalar_t, typename index_t>
struct AtForward {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x;
  const int64_t* image_ids;
  const int64_t* rows;
  const int64_t* cols;
  scalar_t* y;
  WindowTable<acc_t> window;
  DenseShape<index_t> s;  // h_out, w_out unused
  acc_t pad;

  C10_HOST_DEVICE void operator()(index_t i) const {
    index_t u, v;
    const index_t k = s.by_v_out.divmod(s.by_v_out.divmod(i, &u), &v);
    const scalar_t* image = x + static_cast<index_t>(image_ids[k]) * s.image_numel();
    const index_t r0 = static_cast<index_t>(clamp_centre(rows[k], s.h_in, s.v_out)) + v - s.half();
    const index_t c0 = static_cast<index_t>(clamp_centre(cols[k], s.w_in, s.v_out)) + u - s.half();
    y[i] = static_cast<scalar_t>(
        blend_window_corners<acc_t>(window, v, u, s, pad, [&](int, int, index_t vi, index_t uj) {
          return q_value<acc_t>(image + (vi * s.v_in + uj) * s.plane_numel(), r0, c0, s, pad);
        }));
  }
};

// The requests sorted into buckets by exact window centre (built by bucket_requests in
// swap_align2nat_at.cpp). Only centres whose window can read Q's domain are bucketed: rows
// [row_origin, row_origin + rows) and likewise columns; the others read pad only and get no
// gradient.
struct RequestBucketsView {
  // (batch * rows * cols + 1): bucket key = (image * rows + (row - row_origin)) * cols +
  // (col - col_origin) holds the sorted positions j in [offsets[key], offsets[key + 1]); within a
  // bucket, in request order.
  const int64_t* offsets;
  // The distinct (row mod lambda) * lambda + (col mod lambda) of the bucketed requests.
  const int64_t* residues;
  int64_t num_residues;
  int64_t row_origin, rows, col_origin, cols;
};

// grad_q[i], i over Q's domain (N, Vin, Vin, Hq, Wq), of swap_align2nat_at: a request centred at
// r reads Q row r + v - half with cell v, so for each residue class of centres the cells
// reading this row are v == row + half - residue (mod lambda): one per window corner, and one
// exact centre r = row + half - v, looked up in its bucket. Work per element: at most 4 bucket
// lookups per residue (2 when the centre row holds no request), plus one multiply-add per request
// found (see the top of this file). The window gradients are read cell-major in bucket order,
// grad_by_cell[(v * Vout + u) * n + j] for sorted position j: the requests of neighbouring
// centres sit at neighbouring addresses. index_t is int32 when the map, the buckets and the
// gradients all have fewer than 2^31 elements.
template <typename scalar_t, typename out_t, typename index_t>
struct AtGradQ {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* grad_by_cell;  // (Vout, Vout, n)
  index_t num_requests;
  out_t* grad_q;
  RequestBucketsView buckets;
  WindowTable<acc_t> window;
  DenseShape<index_t> s;  // h_out, w_out unused

  C10_HOST_DEVICE void operator()(index_t i) const {
    const auto q = split_q_index(i, s);
    const index_t lambda_val = s.lambda_val;
    const index_t row_origin = static_cast<index_t>(buckets.row_origin);
    const index_t col_origin = static_cast<index_t>(buckets.col_origin);
    const index_t bucket_rows = static_cast<index_t>(buckets.rows);
    const index_t bucket_cols = static_cast<index_t>(buckets.cols);
    const int64_t* offsets = buckets.offsets;
    acc_t acc = 0;
    for (int64_t class_index = 0; class_index < buckets.num_residues; ++class_index) {
      index_t col_residue;
      const index_t row_residue =
          s.by_lambda.divmod(static_cast<index_t>(buckets.residues[class_index]), &col_residue);
      const index_t row_class = s.mod_lambda(q.row + s.half() - row_residue);
      const index_t col_class = s.mod_lambda(q.col + s.half() - col_residue);
      for (int a = 0; a < 2; ++a) {
        const index_t v = static_cast<index_t>(
            geometry::cell_in_class_with_corner(row_class, q.vi, a, lambda_val, s.v_out));
        if (v < 0) {
          continue;
        }
        const auto wv = window[v];
        const acc_t w_a = a ? wv.w1 : wv.w0;
        const index_t bucket_row = q.row + s.half() - v - row_origin;
        if (wv.v0 != q.vi - a || w_a == acc_t(0) || bucket_row < 0 || bucket_row >= bucket_rows) {
          continue;
        }
        const index_t row_key = (q.image * bucket_rows + bucket_row) * bucket_cols;
        if (offsets[row_key] == offsets[row_key + bucket_cols]) {
          continue;  // no request centred on this row
        }
        for (int b = 0; b < 2; ++b) {
          const index_t u = static_cast<index_t>(
              geometry::cell_in_class_with_corner(col_class, q.uj, b, lambda_val, s.v_out));
          if (u < 0) {
            continue;
          }
          const auto wu = window[u];
          const acc_t w_b = b ? wu.w1 : wu.w0;
          const index_t bucket_col = q.col + s.half() - u - col_origin;
          if (wu.v0 != q.uj - b || w_b == acc_t(0) || bucket_col < 0 || bucket_col >= bucket_cols) {
            continue;
          }
          const index_t key = row_key + bucket_col;
          const index_t end = static_cast<index_t>(offsets[key + 1]);
          const acc_t w = w_a * w_b;
          const scalar_t* cell = grad_by_cell + (v * s.v_out + u) * num_requests;
          for (index_t j = static_cast<index_t>(offsets[key]); j < end; ++j) {
            acc += w * static_cast<acc_t>(cell[j]);
          }
        }
      }
    }
    grad_q[i] = static_cast<out_t>(acc);
  }
};

}  // namespace elements
}  // namespace tensormask_proj
