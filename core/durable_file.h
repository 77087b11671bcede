// Durable writes: a file's new bytes reach the disk before its name points at them, so a crash
// leaves either the old file or the new one, never half of one. The one home of this mechanism
// (temporary file, fsync, rename, fsync of the folder; the swap of a whole folder; the lock of a
// folder one writer owns); safetensors, checkpoints, metrics.jsonl and the SVGs use it.
// Every error is a kiln::Error "<op>: '<path>': <what failed>: <strerror>", where `op` names the
// caller (e.g. "safetensors::save").
//
// Test hooks (environment variables, read once per process; tests/test_run_folder.cpp):
//   KILN_CRASH_AT_DURABLE_STEP=N  every durable step counts (each fsync, rename, folder exchange
//       and removal of a replaced folder); just before step N the process kills itself with
//       SIGKILL, as a crash or `kill -9` would.
//   KILN_DURABLE_STEP_LOG=FILE    appends "N <step> <path>" to FILE before each step.
//   KILN_DURABLE_NO_EXCHANGE=1    acts as if the file system refused RENAME_EXCHANGE, so the
//       fallback swap below runs.
#pragma once

#include <cstddef>
#include <functional>
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

// ---- Folders: written whole, then swapped in -------------------------------------------------
// `fill(staged)` writes the new folder's files into a fresh `<dir>.tmp` (each durably: through
// DurableFile, or durable_sync after), then the staged folder replaces `dir`:
//  - `dir` absent: rename `<dir>.tmp` -> `dir`;
//  - else renameat2(RENAME_EXCHANGE) swaps the two names in one step, and the old folder (now
//    `<dir>.tmp`) is removed;
//  - where the file system refuses the exchange (EINVAL, ENOSYS): `dir` -> `<dir>.old`, then
//    `<dir>.tmp` -> `dir`, then `<dir>.old` is removed. Between those two renames `dir` is
//    missing while `<dir>.old` and a complete `<dir>.tmp` exist: durable_folder_current() reads
//    that state and durable_folder_recover() finishes it.
// So a crash at any point leaves `dir` complete (old or new) or, in that fallback window, a
// complete new folder that readers find. If `fill` throws, `dir` is untouched and the staged
// folder is removed. One writer per `dir` at a time (FolderLock).
void durable_write_folder(const std::string& dir,
                          const std::function<void(const std::string& staged)>& fill,
                          const std::string& op);

// Reading only: the folder that holds the newest complete version of `dir`: `dir` itself, or
// `<dir>.tmp` in the fallback window above. `dir` when there is none (the caller's open fails
// naming it). Leftover `.tmp`/`.old` folders are never returned otherwise.
std::string durable_folder_current(const std::string& dir);

// For the folder's writer (holding its lock): finishes a swap a crash interrupted (moves the
// complete folder to `dir`), then removes leftover `<dir>.tmp` and `<dir>.old`.
void durable_folder_recover(const std::string& dir, const std::string& op);

// An exclusive flock on `<folder>/.lock` (created if needed), taken without waiting and held
// until destruction (or the process's end, even by SIGKILL). The holder's pid is written in the
// file; a second holder fails at once with an error naming the folder and that pid.
class FolderLock {
 public:
  FolderLock(const std::string& folder, const std::string& op);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

  static constexpr const char* kFileName = ".lock";

 private:
  int fd_ = -1;
};

}  // namespace kiln
