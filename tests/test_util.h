// Helpers shared by the tests: GPU skipping, random inputs, and tensor comparison that reports the
// first mismatching index, both values and the max error (STYLE rule 17).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "kiln.h"

namespace kiln::testing {

inline bool gpu_available() { return cuda::is_available(); }

inline std::string no_gpu_reason() {
  return cuda::is_compiled() ? "no CUDA device is visible on this machine"
                             : "this build of kiln has no CUDA support (KILN_CUDA=OFF or no nvcc)";
}

#define KILN_REQUIRE_GPU()                                                                   \
  do {                                                                                       \
    if (!::kiln::testing::gpu_available()) GTEST_SKIP() << ::kiln::testing::no_gpu_reason(); \
  } while (0)

// |actual - expected| <= atol + rtol * |expected| elementwise, on any devices and float dtypes.
inline ::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected,
                                            double atol, double rtol) {
  if (actual.shape() != expected.shape()) {
    return ::testing::AssertionFailure() << "shape " << shape_str(actual.shape()) << " vs expected "
                                         << shape_str(expected.shape());
  }
  std::vector<double> a = copy_to(actual, {DType::f64, Device::cpu()}).to_vector<double>();
  std::vector<double> e = copy_to(expected, {DType::f64, Device::cpu()}).to_vector<double>();
  double max_error = 0;
  int64_t first_bad = -1, bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double error = std::fabs(a[i] - e[i]);
    if (!(error <= atol + rtol * std::fabs(e[i]))) {
      if (first_bad < 0) first_bad = static_cast<int64_t>(i);
      ++bad;
    }
    if (error > max_error || std::isnan(error)) max_error = error;
  }
  if (first_bad < 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << a.size() << " elements differ; first at flat index " << first_bad
         << ": " << a[first_bad] << " vs expected " << e[first_bad] << "; max error " << max_error
         << " (atol " << atol << ", rtol " << rtol << ")";
}

// max |a - b| / max(|b|, tiny) over the whole tensor: the norm-wise relative error, so near-zero
// elements do not dominate. Any devices and float dtypes.
inline double relative_error(const Tensor& actual, const Tensor& expected) {
  std::vector<double> a = copy_to(actual, {DType::f64, Device::cpu()}).to_vector<double>();
  std::vector<double> e = copy_to(expected, {DType::f64, Device::cpu()}).to_vector<double>();
  double diff = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - e[i]));
    ref = std::max(ref, std::fabs(e[i]));
  }
  return diff / std::max(ref, 1e-30);
}

// Runs `body`, expects a kiln::Error, and returns its message (error tests check the message).
template <class Body> std::string error_of(Body body) {
  try {
    body();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a kiln::Error";
  return "";
}

}  // namespace kiln::testing

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)
