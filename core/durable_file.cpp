// Durable writes (see durable_file.h), with POSIX calls: the temporary file gets a name no other
// writer can hold (pid and a counter, O_EXCL), so two saves of one path never share it. Every
// fsync, rename, exchange and removal of a replaced folder goes through step(), the test hook.
#include "core/durable_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/error.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// The test hooks of durable_file.h, read once.
struct StepHook {
  long crash_at = 0;
  int log_fd = -1;
  bool no_exchange = false;
  std::atomic<long> count{0};
};

StepHook& step_hook() {
  static StepHook* hook = [] {
    auto* h = new StepHook;  // never freed: steps may run during static destruction
    if (const char* n = std::getenv("KILN_CRASH_AT_DURABLE_STEP")) h->crash_at = std::atol(n);
    if (const char* path = std::getenv("KILN_DURABLE_STEP_LOG")) {
      h->log_fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    }
    const char* no_exchange = std::getenv("KILN_DURABLE_NO_EXCHANGE");
    h->no_exchange = no_exchange != nullptr && std::string(no_exchange) == "1";
    return h;
  }();
  return *hook;
}

// One durable step is about to happen: logged, and the process dies here when a test asked.
void step(const char* what, const std::string& path) {
  StepHook& hook = step_hook();
  long n = ++hook.count;
  if (hook.log_fd >= 0) {
    std::string line = detail::concat(n, " ", what, " ", path, "\n");
    if (::write(hook.log_fd, line.data(), line.size()) < 0) {
      // A test's trace only; a failed write there must not change what the program does.
    }
  }
  if (n == hook.crash_at) std::raise(SIGKILL);
}

std::string folder_of(const std::string& path) {
  std::string parent = fs::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

// fsync of a file or folder by path: 0, or the errno of what failed. EINVAL from fsync means the
// file system cannot sync this kind of file (some cannot sync folders); there is nothing more to
// do then, so it counts as success.
int sync_path(const std::string& path) {
  step("fsync", path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = ::fsync(fd) == 0 || errno == EINVAL ? 0 : errno;
  ::close(fd);
  return err;
}

bool is_folder(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

void remove_folder(const std::string& path, const std::string& op) {
  std::error_code ec;
  fs::remove_all(path, ec);
  KILN_CHECK(!ec, op, ": '", path, "': cannot remove: ", ec.message());
}

void rename_path(const std::string& from, const std::string& to, const std::string& op) {
  step("rename", to);
  if (::rename(from.c_str(), to.c_str()) != 0) {
    KILN_FAIL(op, ": '", to, "': cannot rename '", from, "' to it: ", std::strerror(errno));
  }
}

std::string staged_name(const std::string& dir) { return dir + ".tmp"; }
std::string old_name(const std::string& dir) { return dir + ".old"; }

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
  step("fsync", path_);
  if (::fsync(fd_) != 0) fail("cannot fsync temporary file");
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("cannot close temporary file");
  step("rename", target_);
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

void durable_write_folder(const std::string& dir,
                          const std::function<void(const std::string& staged)>& fill,
                          const std::string& op) {
  durable_folder_recover(dir, op);
  const std::string staged = staged_name(dir), old = old_name(dir), parent = folder_of(dir);
  std::error_code ec;
  fs::create_directories(staged, ec);
  KILN_CHECK(!ec, op, ": '", staged, "': cannot create: ", ec.message());
  try {
    fill(staged);
    durable_sync(staged, op);
  } catch (...) {
    fs::remove_all(staged, ec);
    throw;
  }
  if (!is_folder(dir)) {
    rename_path(staged, dir, op);
    durable_sync(parent, op);
    return;
  }
  if (!step_hook().no_exchange) {
    step("exchange", dir);
    if (::renameat2(AT_FDCWD, staged.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) == 0) {
      durable_sync(parent, op);
      step("remove", staged);  // the previous folder, under the staged name now
      remove_folder(staged, op);
      return;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
      KILN_FAIL(op, ": '", dir, "': cannot exchange it with '", staged,
                "': ", std::strerror(errno));
    }
  }
  // The fallback: two renames. In between, `dir` is missing and `<dir>.old` marks the window.
  rename_path(dir, old, op);
  rename_path(staged, dir, op);
  durable_sync(parent, op);
  step("remove", old);
  remove_folder(old, op);
}

std::string durable_folder_current(const std::string& dir) {
  if (is_folder(dir)) return dir;
  // `<dir>.old` exists without `dir` only in the fallback window, where `<dir>.tmp` is complete
  // (it was synced before `dir` was moved aside) and newer.
  if (is_folder(old_name(dir))) {
    return is_folder(staged_name(dir)) ? staged_name(dir) : old_name(dir);
  }
  return dir;
}

void durable_folder_recover(const std::string& dir, const std::string& op) {
  std::string current = durable_folder_current(dir);
  if (current != dir) {
    rename_path(current, dir, op);
    durable_sync(folder_of(dir), op);
  }
  // Only leftovers now: an unfinished staged folder, or a replaced one not yet removed.
  remove_folder(staged_name(dir), op);
  if (is_folder(dir)) remove_folder(old_name(dir), op);
}

FolderLock::FolderLock(const std::string& folder, const std::string& op) {
  std::string path = folder + "/" + kFileName;
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd_ < 0) KILN_FAIL(op, ": '", path, "': cannot open the lock file: ", std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char text[32] = {};
    ssize_t n = ::pread(fd_, text, sizeof text - 1, 0);
    std::string holder(text, static_cast<size_t>(std::max<ssize_t>(n, 0)));
    holder.erase(std::remove(holder.begin(), holder.end(), '\n'), holder.end());
    ::close(fd_);
    fd_ = -1;
    KILN_CHECK(err != EWOULDBLOCK, op, ": '", folder, "' is in use by another run (pid ",
               holder.empty() ? "unknown" : holder, ", which holds '", path,
               "'); wait for it to end or choose another folder");
    KILN_FAIL(op, ": '", path, "': cannot lock: ", std::strerror(err));
  }
  std::string pid = detail::concat(::getpid(), "\n");
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
    int err = errno;
    ::close(fd_);
    fd_ = -1;
    KILN_FAIL(op, ": '", path, "': cannot write the pid: ", std::strerror(err));
  }
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace kiln
