#include "models/seq2seq/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace kiln::seq2seq {

namespace fs = std::filesystem;

namespace {
void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  KILN_CHECK(fd >= 0, path, ": cannot open to sync: ", std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  KILN_CHECK(rc == 0, path, ": fsync failed: ", std::strerror(err));
}
}  // namespace

void write_text_file(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    KILN_CHECK(out.good(), tmp, ": cannot open for writing: ", std::strerror(errno));
    out << text;
    out.flush();
    KILN_CHECK(out.good(), tmp, ": write failed: ", std::strerror(errno));
  }
  fsync_path(tmp, false);
  KILN_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, path, ": rename failed: ", std::strerror(errno));
}

void write_directory_atomically(const std::string& dir, const std::function<void(const std::string&)>& fill) {
  fs::path target(dir);
  fs::path tmp = target;
  tmp += ".tmp";
  fs::path old = target;
  old += ".old";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  KILN_CHECK(!ec, tmp.string(), ": cannot create: ", ec.message());
  try {
    fill(tmp.string());
    for (const auto& entry : fs::directory_iterator(tmp)) fsync_path(entry.path().string(), false);
    fsync_path(tmp.string(), true);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  // Swap: the old checkpoint stays complete under <dir>.old until the new one is in place.
  fs::remove_all(old, ec);
  if (fs::exists(target)) {
    fs::rename(target, old, ec);
    KILN_CHECK(!ec, dir, ": cannot move the previous checkpoint aside: ", ec.message());
  }
  fs::rename(tmp, target, ec);
  KILN_CHECK(!ec, dir, ": cannot move the new checkpoint in place: ", ec.message());
  fs::remove_all(old, ec);
  fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  fsync_path(parent.string(), true);
}

}  // namespace kiln::seq2seq
