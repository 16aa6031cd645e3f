// CpuRunner: runs the element functions of swap_align2nat_elements.h on the CPU, for the drivers
// of swap_align2nat_drivers.h. Every index goes through the same functor as on CUDA; the chunks
// of at::parallel_for only decide which thread computes which indices, never the arithmetic, so
// the results do not depend on the thread count.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace tensormask_proj {

struct CpuRunner {
  // Indices per task: enough to amortise scheduling, small enough to balance 2 to 64 threads.
  static constexpr int64_t kGrain = 4096;

  template <typename index_t, typename F>
  void elements(index_t total, const F& f) const {
    at::parallel_for(0, static_cast<int64_t>(total), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        f(static_cast<index_t>(i));
      }
    });
  }

  // The CUDA tile kernel's two steps, tile after tile: stage into a local buffer (shared memory
  // on CUDA), then write the tile's outputs from it.
  template <typename Tiles>
  void tiles(const Tiles& tiles) const {
    using acc_t = typename Tiles::acc_t;
    using index_t = decltype(tiles.num_tiles());
    // About 256 outputs per tile: 16 tiles per task and more.
    const int64_t grain =
        std::max<int64_t>(16, kGrain / std::max<int64_t>(1, tiles.tile_cols * tiles.s.lambda_val));
    at::parallel_for(
        0, static_cast<int64_t>(tiles.num_tiles()), grain, [&](int64_t begin, int64_t end) {
          std::vector<acc_t> stage(4 * static_cast<size_t>(tiles.stage_capacity));
          for (int64_t t = begin; t < end; ++t) {
            const auto tile = tiles.tile(static_cast<index_t>(t));
            for (index_t j = 0; j < tiles.stage_size(tile); ++j) {
              stage[j] = tiles.stage_value(tile, j);
            }
            for (index_t j = 0; j < tiles.output_count(tile); ++j) {
              tiles.write_output(tile, j, stage.data());
            }
          }
        });
  }
};

}  // namespace tensormask_proj
