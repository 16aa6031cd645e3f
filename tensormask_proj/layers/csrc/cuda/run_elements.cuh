// CudaRunner: launches the element functions of swap_align2nat_elements.h on the current CUDA
// stream, for the drivers of swap_align2nat_drivers.h. This is the only CUDA-specific code of
// the kernels: grid size, stream, and the shared-memory staging of the tiled forward.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/macros/Macros.h>
// (ATen/cuda/CUDAContext.h is avoided on purpose: it pulls in cuSPARSE/cuBLAS headers that a
// plain CUDA toolkit install may lack, and nothing here needs them.)

#include <algorithm>
#include <cstdint>

namespace tensormask_proj {
namespace cuda_launch {

constexpr int kThreads = 256;

inline int64_t multiprocessor_count() {
  int sm_count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(
      &sm_count, cudaDevAttrMultiProcessorCount, c10::cuda::current_device()));
  return sm_count;
}

// Grid-stride loops below: 32 blocks of kThreads per multiprocessor keep every one busy.
inline int64_t num_blocks(int64_t total) {
  const int64_t max_blocks = multiprocessor_count() * 32;
  return std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, max_blocks));
}

template <typename index_t, typename F>
__global__ void __launch_bounds__(kThreads) elements_kernel(index_t total, F f) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(blockDim.x) * gridDim.x) {
    f(i);
  }
}

// One block per tile (grid-stride over tiles): the block stages the tile's Q values in shared
// memory, then writes its outputs.
template <typename Tiles>
__global__ void __launch_bounds__(kThreads) tiles_kernel(Tiles tiles) {
  using acc_t = typename Tiles::acc_t;
  using index_t = decltype(tiles.num_tiles());
  extern __shared__ __align__(sizeof(double)) unsigned char shared_bytes[];
  acc_t* stage = reinterpret_cast<acc_t*>(shared_bytes);
  for (index_t t = blockIdx.x; t < tiles.num_tiles(); t += gridDim.x) {
    const auto tile = tiles.tile(t);
    for (index_t j = threadIdx.x; j < tiles.stage_size(tile); j += blockDim.x) {
      stage[j] = tiles.stage_value(tile, j);
    }
    __syncthreads();
    for (index_t j = threadIdx.x; j < tiles.output_count(tile); j += blockDim.x) {
      tiles.write_output(tile, j, stage);
    }
    __syncthreads();
  }
}

}  // namespace cuda_launch

struct CudaRunner {
  cudaStream_t stream;

  template <typename index_t, typename F>
  void elements(index_t total, const F& f) const {
    if (total == 0) {
      return;
    }
    cuda_launch::elements_kernel<index_t, F>
        <<<cuda_launch::num_blocks(total), cuda_launch::kThreads, 0, stream>>>(total, f);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <typename Tiles>
  void tiles(const Tiles& tiles) const {
    using acc_t = typename Tiles::acc_t;
    const auto num_tiles = tiles.num_tiles();
    if (num_tiles == 0) {
      return;
    }
    const size_t shared = 4 * static_cast<size_t>(tiles.stage_capacity) * sizeof(acc_t);
    // A few KB of shared memory per block: 8 resident blocks per multiprocessor. (A first
    // choice, to be tuned on a GPU with the other tile sizes.)
    const int64_t blocks = std::min<int64_t>(num_tiles, cuda_launch::multiprocessor_count() * 8);
    cuda_launch::tiles_kernel<Tiles><<<blocks, cuda_launch::kThreads, shared, stream>>>(tiles);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace tensormask_proj
