// Durable writes (see durable_file.h), with POSIX calls: the temporary file gets a name no other
// writer can hold (pid and a counter, O_EXCL), so two saves of one path never share it.
#include "core/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/error.h"

namespace kiln {
namespace {

std::string folder_of(const std::string& path) {
  std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

// fsync of a file or folder by path: 0, or the errno of what failed. EINVAL from fsync means the
// file system cannot sync this kind of file (some cannot sync folders); there is nothing more to
// do then, so it counts as success.
int sync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = ::fsync(fd) == 0 || errno == EINVAL ? 0 : errno;
  ::close(fd);
  return err;
}

}  // namespace

DurableFile::DurableFile(std::string target, std::string op)
    : target_(std::move(target)), op_(std::move(op)) {
  static std::atomic<unsigned> counter{0};
  for (int attempt = 0; fd_ < 0; ++attempt) {
    path_ = detail::concat(target_, ".tmp-", ::getpid(), "-", counter++);
    // 0666 and the umask give the permissions any new file gets (mkstemp would force 0600).
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0 && (errno != EEXIST || attempt == 100)) fail("cannot create temporary file");
  }
}

DurableFile::~DurableFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(path_.c_str());
}

void DurableFile::write(const void* data, size_t bytes) {
  const char* next = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t written = ::write(fd_, next, std::min<size_t>(bytes, size_t{1} << 30));
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) {
      if (written == 0) errno = EIO;  // no progress and no reason: do not spin
      fail("cannot write temporary file");
    }
    next += written;
    bytes -= static_cast<size_t>(written);
  }
}

void DurableFile::commit() {
  if (::fsync(fd_) != 0) fail("cannot fsync temporary file");
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("cannot close temporary file");
  if (::rename(path_.c_str(), target_.c_str()) != 0) fail("cannot rename temporary file");
  committed_ = true;
  std::string folder = folder_of(target_);
  int err = sync_path(folder);
  KILN_CHECK(err == 0, op_, ": '", target_, "': the file was written but fsync of directory '",
             folder, "' failed, so it may not survive a crash: ", std::strerror(err));
}

void DurableFile::fail(const char* what) const {
  KILN_FAIL(op_, ": '", target_, "': ", what, " '", path_, "': ", std::strerror(errno));
}

void durable_write(const std::string& path, std::string_view bytes, const std::string& op) {
  DurableFile file(path, op);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

void durable_sync(const std::string& path, const std::string& op) {
  int err = sync_path(path);
  KILN_CHECK(err == 0, op, ": '", path, "': cannot fsync: ", std::strerror(err));
}

}  // namespace kiln
