// Durable writes: a file's new bytes reach the disk before its name points at them, so a crash
// leaves either the old file or the new one, never half of one. The one home of this mechanism
// (temporary file, fsync, rename, fsync of the folder); safetensors and checkpoints use it.
// Every error is a kiln::Error "<op>: '<path>': <what failed>: <strerror>", where `op` names the
// caller (e.g. "safetensors::save").
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kiln {

// A new file next to `target` that replaces it on commit(); until then the destructor removes
// it, so a failure anywhere (an OS error, a CUDA copy) leaves the folder as it was.
class DurableFile {
 public:
  DurableFile(std::string target, std::string op);
  ~DurableFile();
  DurableFile(const DurableFile&) = delete;
  DurableFile& operator=(const DurableFile&) = delete;

  void write(const void* data, size_t bytes);
  // fsync, close, rename over the target, then fsync the folder so the rename is durable too.
  void commit();

 private:
  [[noreturn]] void fail(const char* what) const;

  std::string target_, op_;
  std::string path_;  // the temporary file
  int fd_ = -1;
  bool committed_ = false;
};

// Writes `bytes` to `path` through a DurableFile.
void durable_write(const std::string& path, std::string_view bytes, const std::string& op);

// fsyncs a file or a folder that is already in place (a file written by other code, or a folder
// whose entries were renamed).
void durable_sync(const std::string& path, const std::string& op);

}  // namespace kiln
