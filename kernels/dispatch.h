// Runtime dtype -> compile-time type. Inside the body, `scalar_t` is the element type:
//   KILN_DISPATCH_FLOAT(x.dtype(), "tanh", [&] { launch<scalar_t>(...); });
#pragma once

#include "core/dtype.h"
#include "core/error.h"

#define KILN_DISPATCH_CASE(enum_value, type, ...) \
  case ::kiln::DType::enum_value: {               \
    using scalar_t = type;                        \
    return __VA_ARGS__();                         \
  }

#define KILN_DISPATCH_FLOAT(dtype, op_name, ...)                  \
  [&] {                                                           \
    switch (dtype) {                                              \
      KILN_DISPATCH_CASE(f32, float, __VA_ARGS__)                 \
      KILN_DISPATCH_CASE(f64, double, __VA_ARGS__)                \
      default:                                                    \
        KILN_FAIL(op_name, ": dtype ", ::kiln::dtype_name(dtype), \
                  " is not supported (expected f32 or f64)");     \
    }                                                             \
  }()

#define KILN_DISPATCH_ALL(dtype, op_name, ...)            \
  [&] {                                                   \
    switch (dtype) {                                      \
      KILN_DISPATCH_CASE(f32, float, __VA_ARGS__)         \
      KILN_DISPATCH_CASE(f64, double, __VA_ARGS__)        \
      KILN_DISPATCH_CASE(i32, int32_t, __VA_ARGS__)       \
      KILN_DISPATCH_CASE(i64, int64_t, __VA_ARGS__)       \
      KILN_DISPATCH_CASE(bf16, ::kiln::bf16, __VA_ARGS__) \
    }                                                     \
    KILN_FAIL(op_name, ": unknown dtype");                \
  }()

#define KILN_DISPATCH_INDEX(dtype, op_name, ...)                        \
  [&] {                                                                 \
    switch (dtype) {                                                    \
      KILN_DISPATCH_CASE(i32, int32_t, __VA_ARGS__)                     \
      KILN_DISPATCH_CASE(i64, int64_t, __VA_ARGS__)                     \
      default:                                                          \
        KILN_FAIL(op_name, ": index dtype ", ::kiln::dtype_name(dtype), \
                  " is not supported (expected i32 or i64)");           \
    }                                                                   \
  }()
