// Operator schemas of tensormask_proj. The kernels register themselves for their dispatch keys in
// cpu/*_kernel.cpp and cuda/*_kernel.cu; the fake (meta) kernels and
// the autograd formula are registered from Python next to the wrapper
// (tensormask_proj/layers/swap_align2nat.py).
#include "swap_align2nat.h"

#include <Python.h>  // first, as Python's documentation asks
#include <torch/library.h>

#include <atomic>
#include <string>

// Loading the shared library as the Python module tensormask_proj._C runs the registrations
// below; the module itself has no Python-visible functions.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C", /* name of module */
      "tensormask_proj compiled operators (see torch.ops.tensormask_proj)",
      -1,      /* size of per-interpreter state of the module */
      nullptr, /* methods */
  };
  return PyModule_Create(&module_def);
}
}

namespace tensormask_proj {
namespace {

std::atomic<int> selected_kernels{static_cast<int>(KernelChoice::kDefault)};

constexpr const char* kKernelNames[] = {"default", "shared", "tiled"};

// Selects the kernels by name for the whole process and returns the previous name.
std::string set_kernels(const std::string& name) {
  for (int k = 0; k < 3; ++k) {
    if (name == kKernelNames[k]) {
      return kKernelNames[selected_kernels.exchange(k)];
    }
  }
  TORCH_CHECK(
      false, "_set_kernels: unknown kernels '", name, "', expected 'default', 'shared' or 'tiled'");
}

}  // namespace

KernelChoice kernel_choice() { return static_cast<KernelChoice>(selected_kernels.load()); }

}  // namespace tensormask_proj

TORCH_LIBRARY(tensormask_proj, m) {
  m.def("swap_align2nat(Tensor x, int lambda_val, float pad_val) -> Tensor");
  // Adjoint of swap_align2nat with respect to x; input_size is x's shape (N, C, H, W).
  m.def(
      "swap_align2nat_backward(Tensor grad_output, int lambda_val, SymInt[] input_size) -> Tensor");
  // The natural windows of swap_align2nat centred at (rows[k], cols[k]) of image image_ids[k]
  // of x (n windows of Vout x Vout, see swap_align2nat_at.h).
  m.def(
      "swap_align2nat_at(Tensor x, Tensor image_ids, Tensor rows, Tensor cols, int lambda_val, "
      "float pad_val) -> Tensor");
  // Adjoint of swap_align2nat_at with respect to x; input_size is x's shape (N, C, H, W).
  m.def(
      "swap_align2nat_at_backward(Tensor grad_output, Tensor image_ids, Tensor rows, "
      "Tensor cols, int lambda_val, SymInt[] input_size) -> Tensor");
  // Which kernels the ops run (KernelChoice in swap_align2nat.h): "default", "shared" or
  // "tiled"; returns the previous choice. For tests and benchmarks.
  m.def("_set_kernels(str name) -> str", &tensormask_proj::set_kernels);
}
