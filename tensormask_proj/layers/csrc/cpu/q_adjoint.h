// Helpers of the CPU-only kernels (the dense row kernels and swap_align2nat_at's scatter
// backward): task sizes, and the last step of the backward kernels, which accumulate the gradient
// of one Q plane in a buffer: its adjoint into one plane of the input gradient.
#pragma once

#include <algorithm>
#include <cstdint>

namespace tensormask_proj {

// at::parallel_for grain for tasks of about `work_per_task` element operations each: enough
// tasks per chunk that a small call runs inline in the calling thread (handing a few microseconds
// of work to the thread pool costs more than the work, much more on a loaded machine).
inline int64_t grain_for(int64_t work_per_task) {
  constexpr int64_t kWorkPerChunk = 32768;
  return std::max<int64_t>(1, kWorkPerChunk / std::max<int64_t>(1, work_per_task));
}

// grad_x (h x w) from grad_q: the identity when Q is X (Vout odd; grad_q is h x w), or the adjoint
// of the 2x2 box average (Vout even; grad_q is (h + 1) x (w + 1), stored from row and column -1):
// grad_x[r][c] = (gq[r][c] + gq[r][c+1] + gq[r+1][c] + gq[r+1][c+1]) / 4 in stored indices.
template <typename scalar_t, typename acc_t>
inline void q_adjoint_plane(const acc_t* grad_q, scalar_t* grad_x, int64_t h, int64_t w, bool box) {
  const int64_t q_w = box ? w + 1 : w;
  for (int64_t r = 0; r < h; ++r) {
    const acc_t* q_row = grad_q + r * q_w;
    scalar_t* x_row = grad_x + r * w;
    for (int64_t c = 0; c < w; ++c) {
      const acc_t g =
          box ? acc_t(0.25) * (q_row[c] + q_row[c + 1] + q_row[q_w + c] + q_row[q_w + c + 1])
              : q_row[c];
      x_row[c] = static_cast<scalar_t>(g);
    }
  }
}

}  // namespace tensormask_proj
