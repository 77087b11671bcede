// Element types a Tensor can hold, and how to name and size them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/bfloat16.h"

namespace kiln {

// bf16 (core/bfloat16.h) is storage and conversion: casts, copies, views, printing and
// safetensors take it; arithmetic ops say they expect f32 or f64.
enum class DType : uint8_t { f32, f64, i32, i64, bf16 };

inline constexpr size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::bf16: return 2;
  }
  return 0;
}

inline constexpr const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::bf16: return "bf16";
  }
  return "?";
}

inline constexpr bool is_floating(DType dtype) {
  return dtype == DType::f32 || dtype == DType::f64 || dtype == DType::bf16;
}

// The C++ type behind a DType: dtype_of<float>::value == DType::f32.
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::bf16; };

}  // namespace kiln
