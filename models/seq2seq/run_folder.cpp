// The output folder of a training run (see run_folder.h).
#include "models/seq2seq/run_folder.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "core/error.h"

namespace kiln::seq2seq {

namespace {

namespace fs = std::filesystem;

// `dir` exists as a folder afterwards; a file at it or above it is named.
void make_folder(const std::string& dir) {
  std::error_code ec;
  for (fs::path p = dir; !p.empty(); p = p.parent_path()) {
    fs::file_status status = fs::status(p, ec);  // ENOTDIR under a file: look further up
    if (fs::exists(status)) {
      KILN_CHECK(fs::is_directory(status), "train: output folder '", dir, "': '", p.string(),
                 "' is a file, not a folder; give --out a folder path");
      break;
    }
    if (p == p.parent_path()) break;
  }
  fs::create_directories(dir, ec);
  KILN_CHECK(!ec, "train: cannot create the output folder '", dir, "': ", ec.message());
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name != FolderLock::kFileName) names.push_back(name);
  }
  KILN_CHECK(!ec, "train: cannot list the output folder '", dir, "': ", ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// What a crash can leave at the top of the folder: a swap of `X` cut short (`X.tmp`, `X.old`),
// finished or undone by core, and a DurableFile's temporary file (`name.tmp-<pid>-<n>`).
void recover(const std::string& dir) {
  for (const std::string& name : entries(dir)) {
    std::string path = dir + "/" + name;
    std::error_code ec;
    if (fs::is_directory(path, ec) && (ends_with(name, ".tmp") || ends_with(name, ".old"))) {
      durable_folder_recover(path.substr(0, path.size() - 4), "train");
    } else if (name.find(".tmp-") != std::string::npos && fs::is_regular_file(path, ec)) {
      fs::remove(path, ec);
      KILN_CHECK(!ec, "train: cannot remove the leftover '", path, "': ", ec.message());
    }
  }
}

}  // namespace

RunFolder::RunFolder(std::string dir, OutMode mode) : dir_(std::move(dir)) {
  make_folder(dir_);
  lock_ = std::make_unique<FolderLock>(dir_, "train");
  if (mode == OutMode::fresh) {
    std::vector<std::string> names = entries(dir_);
    std::string listed;
    for (size_t i = 0; i < names.size() && i < 4; ++i) listed += (i ? ", " : "") + names[i];
    if (names.size() > 4) listed += ", ...";
    KILN_CHECK(names.empty(), "train: the output folder '", dir_, "' is not empty (", listed,
               "); continue that run with --resume ", dir_,
               "/last, replace it with --overwrite, "
               "or choose another --out");
  }
  recover(dir_);
}

void RunFolder::clear_previous_run(const std::vector<std::string>& keep) const {
  for (const std::string& name : entries(dir_)) {
    if (std::find(keep.begin(), keep.end(), name) != keep.end()) continue;
    std::error_code ec;
    fs::remove_all(dir_ + "/" + name, ec);
    KILN_CHECK(!ec, "train: --overwrite: cannot remove '", dir_, "/", name, "': ", ec.message());
  }
}

}  // namespace kiln::seq2seq
