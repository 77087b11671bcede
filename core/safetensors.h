// safetensors checkpoints (https://github.com/huggingface/safetensors), readable by PyTorch and the
// Python safetensors library. A file is
//   [8 bytes]  N, the header length, unsigned little-endian
//   [N bytes]  UTF-8 JSON object: name -> {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]}
//              plus an optional "__metadata__": {string: string}; padded with spaces so that the
//              data section starts at a multiple of 8 bytes
//   [rest]     the data section: each tensor's bytes, little-endian, row-major, at [b, e) relative
//              to the start of the section; the ranges cover the section exactly, without overlap.
// kiln reads and writes the dtypes F32, F64, I32, I64 and BF16.
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"

namespace kiln::safetensors {

using TensorMap = std::map<std::string, Tensor>;  // name -> tensor, sorted by name

struct File {
  TensorMap tensors;                            // all on the CPU
  std::map<std::string, std::string> metadata;  // the "__metadata__" entries
};

// Writes every tensor (any device, any dtype; copied to the host one at a time) to `path`, in name
// order with contiguous offsets. Atomic: the bytes go to a temporary file in the same directory,
// which is fsynced and renamed over `path`, then the directory is fsynced. On failure it throws a
// kiln::Error naming the path and the OS error, leaves an existing file at `path` as it was and
// removes the temporary file.
void save(const std::string& path, const TensorMap& tensors,
          const std::map<std::string, std::string>& metadata = {});

// Reads and validates `path` (see parse); throws a kiln::Error naming the path when it cannot be
// read.
File load(const std::string& path);

// Decodes a whole file held in memory. Every malformed or hostile input is a kiln::Error naming
// `source` and the problem; sizes in the header are checked against the bytes present before any
// read or allocation, so nothing it claims can cause an out-of-bounds read or a huge allocation.
File parse(const std::string& bytes, const std::string& source);

}  // namespace kiln::safetensors
