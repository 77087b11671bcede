#include "core/autocast.h"

#include "core/error.h"

namespace kiln {

namespace {
thread_local DType gemm_input_dtype = DType::f32;
}  // namespace

DType Autocast::gemm_inputs() { return gemm_input_dtype; }

void Autocast::set_gemm_inputs(DType dtype) {
  KILN_CHECK(dtype == DType::f32 || dtype == DType::bf16,
             "autocast: GEMM inputs must be f32 or bf16, got ", dtype_name(dtype));
  gemm_input_dtype = dtype;
}

}  // namespace kiln
