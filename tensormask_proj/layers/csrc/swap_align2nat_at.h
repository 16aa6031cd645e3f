// swap_align2nat_at: the natural windows of swap_align2nat at requested positions only.
//
//   x: (N, Vin*Vin, H, W) aligned map; image_ids, rows, cols: (n,) int64 requests.
//   output: (n, Vout, Vout), Vout = lambda * Vin; output k is the natural window centred at row
//   rows[k], column cols[k] of x[image_ids[k]] (on x's grid). With rows = y * lambda and
//   cols = x * lambda it equals swap_align2nat(x, lambda, pad)[image_ids[k], :, y, x]; any other
//   centre is allowed too, so a caller may pass a crop of the map with shifted centres. Requests
//   may repeat a centre (their gradients add up).
// The kernels are AtForward and AtGradQ (+ BoxAdjoint) of swap_align2nat_elements.h, shared by
// both devices; this header declares the host code around them.
#pragma once

#include "swap_align2nat_elements.h"

namespace tensormask_proj {

at::Tensor swap_align2nat_at_forward_cpu(
    const at::Tensor& x,
    const at::Tensor& image_ids,
    const at::Tensor& rows,
    const at::Tensor& cols,
    int64_t lambda_val,
    double pad_val);
at::Tensor swap_align2nat_at_backward_cpu(
    const at::Tensor& grad_output,
    const at::Tensor& image_ids,
    const at::Tensor& rows,
    const at::Tensor& cols,
    int64_t lambda_val,
    c10::IntArrayRef input_size);

// Raises, naming the first offending request, when an image id is outside [0, batch). Runs on
// the ids' device (one device synchronisation on CUDA): kernels index the map with the ids.
void check_image_ids(const char* op, const at::Tensor& image_ids, int64_t batch);

// The requests of one backward call sorted into buckets by exact window centre, for AtGradQ
// (see elements::RequestBucketsView for the layout). Built with torch ops on the requests'
// device: a stable sort of the bucket keys (`order`: request index at each sorted position),
// then searchsorted for the bucket offsets, so that the order within a bucket is the request
// order (deterministic on both devices). Memory: one int64 offset per possible centre,
// batch * (Hq + Vout - 1) * (Wq + Vout - 1), about (H + Vout) * (W + Vout) / (Vin^2 H W) of the
// gradient map.
struct RequestBuckets {
  at::Tensor offsets, order, residues;
  int64_t row_origin, rows, col_origin, cols;

  elements::RequestBucketsView view() const {
    return {
        offsets.const_data_ptr<int64_t>(),
        residues.const_data_ptr<int64_t>(),
        residues.numel(),
        row_origin,
        rows,
        col_origin,
        cols};
  }
};

RequestBuckets bucket_requests(
    const at::Tensor& image_ids,
    const at::Tensor& rows,
    const at::Tensor& cols,
    const elements::DenseShape<int64_t>& s);

// Checks of the request tensors, shared by every kernel: 1-D int64 tensors of one length n on
// the device of `x`. Returns n.
inline int64_t check_swap_align2nat_at_requests(
    const char* op,
    const at::Tensor& x,
    const at::Tensor& image_ids,
    const at::Tensor& rows,
    const at::Tensor& cols) {
  const std::pair<const char*, const at::Tensor*> requests[] = {
      {"image_ids", &image_ids}, {"rows", &rows}, {"cols", &cols}};
  for (const auto& [name, t] : requests) {
    TORCH_CHECK(
        t->dim() == 1 && t->scalar_type() == at::kLong,
        op,
        ": ",
        name,
        " must be a 1-D int64 tensor, got ",
        t->scalar_type(),
        " of shape ",
        t->sizes());
    TORCH_CHECK(
        t->device() == x.device(),
        op,
        ": ",
        name,
        " is on ",
        t->device(),
        " but the map is on ",
        x.device());
  }
  TORCH_CHECK(
      rows.size(0) == image_ids.size(0) && cols.size(0) == image_ids.size(0),
      op,
      ": image_ids, rows and cols must have one length, got ",
      image_ids.size(0),
      ", ",
      rows.size(0),
      " and ",
      cols.size(0));
  return image_ids.size(0);
}

// Checks of the backward's arguments; `grad_input` is the allocated gradient of the map.
// Returns Vin.
inline int64_t check_swap_align2nat_at_backward(
    const at::Tensor& grad_output,
    const at::Tensor& grad_input,
    const at::Tensor& image_ids,
    const at::Tensor& rows,
    const at::Tensor& cols,
    int64_t lambda_val) {
  constexpr const char* op = "swap_align2nat_at_backward";
  const int64_t v_in = check_swap_align2nat_input(grad_input, lambda_val, op);
  const int64_t n = check_swap_align2nat_at_requests(op, grad_output, image_ids, rows, cols);
  const int64_t v_out = v_in * lambda_val;
  TORCH_CHECK(
      grad_output.sizes() == c10::IntArrayRef({n, v_out, v_out}),
      op,
      ": grad_output has shape ",
      grad_output.sizes(),
      " but the forward output for ",
      n,
      " requests, input_size ",
      grad_input.sizes(),
      " and lambda_val ",
      lambda_val,
      " has shape [",
      n,
      ", ",
      v_out,
      ", ",
      v_out,
      "]");
  return v_in;
}

}  // namespace tensormask_proj
