// Host code of swap_align2nat_at shared by the CPU and CUDA kernels: the image-id check and the
// request buckets of the backward, both written with torch ops so that they run on either
// device.
#include "swap_align2nat_at.h"

#include <ATen/ATen.h>

namespace tensormask_proj {

void check_image_ids(const char* op, const at::Tensor& image_ids, int64_t batch) {
  if (image_ids.numel() == 0) {
    return;
  }
  const at::Tensor bad = at::logical_or(image_ids < 0, image_ids >= batch).nonzero();
  if (bad.size(0) == 0) {
    return;
  }
  const int64_t k = bad[0][0].item<int64_t>();
  TORCH_CHECK(
      false,
      op,
      ": image_ids[",
      k,
      "] = ",
      image_ids[k].item<int64_t>(),
      " is out of range for a map of ",
      batch,
      " images");
}

RequestBuckets bucket_requests(
    const at::Tensor& image_ids,
    const at::Tensor& rows,
    const at::Tensor& cols,
    const elements::DenseShape<int64_t>& s) {
  RequestBuckets b;
  // A window centred at row r reads Q rows r + v - half, v in [0, Vout): it reaches Q's domain
  // [q_origin, q_origin + Hq) exactly when r lies in [row_origin, row_origin + rows).
  b.row_origin = s.q_origin + s.half() - (s.v_out - 1);
  b.rows = s.q_h + s.v_out - 1;
  b.col_origin = s.q_origin + s.half() - (s.v_out - 1);
  b.cols = s.q_w + s.v_out - 1;
  const int64_t num_buckets = s.batch * b.rows * b.cols;
  const at::Tensor bucket_row = rows - b.row_origin;
  const at::Tensor bucket_col = cols - b.col_origin;
  const at::Tensor reaches_map = (bucket_row >= 0)
                                     .logical_and_(bucket_row < b.rows)
                                     .logical_and_(bucket_col >= 0)
                                     .logical_and_(bucket_col < b.cols);
  // Requests that read pad only get the key num_buckets: sorted last, in no bucket.
  const at::Tensor key =
      at::where(reaches_map, (image_ids * b.rows + bucket_row) * b.cols + bucket_col, num_buckets);
  const auto [sorted_keys, order] = key.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  b.order = order.contiguous();
  b.offsets = at::searchsorted(sorted_keys, at::arange(num_buckets + 1, key.options()));
  const int64_t lambda_val = s.lambda_val;
  const at::Tensor residue = (at::remainder(rows, lambda_val) * lambda_val)
                                 .add_(at::remainder(cols, lambda_val))
                                 .masked_select(reaches_map);
  b.residues = std::get<0>(at::_unique(residue, /*sorted=*/true)).contiguous();
  return b;
}

}  // namespace tensormask_proj
