// The output folder of a training run (--out: last/, best/, metrics.jsonl, loss.svg,
// tokenizers/), held by one run at a time. Opening it checks everything about the folder before
// any data is read or any model built: that it is (or can become) a folder, that no other run
// holds it (core's FolderLock on OUT/.lock, which names the holder's pid), that a fresh run does
// not mix with an old one, and it finishes or removes what a crashed save left behind.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/durable_file.h"

namespace kiln::seq2seq {

// fresh: the folder must be empty (or new); resume: it may hold the run being continued;
// overwrite: it may hold an old run, which clear_previous_run() removes.
enum class OutMode { fresh, resume, overwrite };

class RunFolder {
 public:
  // Errors (kiln::Error) name the folder and what to do.
  RunFolder(std::string dir, OutMode mode);

  // --overwrite, once the new run has its data and model: removes everything of the old run
  // except the lock and the entries named in `keep` (what this run already wrote, e.g.
  // "tokenizers"). Done this late so a run that fails on its input leaves the old one intact.
  void clear_previous_run(const std::vector<std::string>& keep) const;

  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::unique_ptr<FolderLock> lock_;  // held for the run's lifetime
};

}  // namespace kiln::seq2seq
