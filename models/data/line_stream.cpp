// Reading lines as they arrive (see line_stream.h): poll() for the pause, read() for the bytes.
#include "models/data/line_stream.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace kiln::data {

LineStream::LineStream(int fd, std::string name, ReadOptions options)
    : fd_(fd), name_(std::move(name)), options_(options) {}

void LineStream::take_lines(InputLines& lines, size_t max_lines) {
  size_t start = 0;
  while (lines.sentences.size() < max_lines) {
    size_t end = pending_.find('\n', start);
    if (end == std::string::npos) break;
    add_input_line(lines, std::string_view(pending_).substr(start, end - start), name_,
                   ++line_number_, options_);
    start = end + 1;
  }
  pending_.erase(0, start);
}

InputLines LineStream::next(size_t max_lines, int pause_ms) {
  InputLines lines;
  for (;;) {
    take_lines(lines, max_lines);
    if (lines.sentences.size() >= max_lines) return lines;
    if (ended_) {
      if (!pending_.empty()) {  // the last line, without a '\n'
        add_input_line(lines, pending_, name_, ++line_number_, options_);
        pending_.clear();
      }
      return lines;
    }
    // Before the first line, wait as long as it takes; after it, only for a pause.
    pollfd ready{fd_, POLLIN, 0};
    int polled = ::poll(&ready, 1, lines.sentences.empty() ? -1 : pause_ms);
    if (polled < 0 && errno == EINTR) continue;
    KILN_CHECK(polled >= 0, name_, ": cannot wait for input: ", std::strerror(errno));
    if (polled == 0) return lines;  // the input paused: answer what is complete
    char buffer[1 << 16];
    ssize_t got = ::read(fd_, buffer, sizeof buffer);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    KILN_CHECK(got >= 0, name_, ": cannot read: ", std::strerror(errno));
    if (got == 0) ended_ = true;
    pending_.append(buffer, static_cast<size_t>(got));
  }
}

}  // namespace kiln::data
