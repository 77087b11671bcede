// Lines of a file descriptor as they arrive: kiln translate's stdin, a file, a pipe or a
// terminal. Each line is cleaned as data::parse_input_lines cleans a whole text (add_input_line:
// CRLF, a BOM on line 1, strict UTF-8 named as "name:LINE", trim), so a line can be answered
// before the input ends.
#pragma once

#include <string>

#include "models/data/corpus.h"

namespace kiln::data {

class LineStream {
 public:
  LineStream(int fd, std::string name, ReadOptions options = {});

  // Waits (without a limit) for one complete line, then keeps taking lines while more input
  // arrives within `pause_ms` of the last, up to `max_lines`. The end of the input ends the last
  // line even without a '\n'. Returns the lines in input order with their problems; no
  // sentences at all means the input has ended. A read error throws kiln::Error naming the input.
  InputLines next(size_t max_lines, int pause_ms);

 private:
  // Moves complete lines from pending_ into `lines` until it holds max_lines.
  void take_lines(InputLines& lines, size_t max_lines);

  int fd_;
  std::string name_;
  ReadOptions options_;
  std::string pending_;  // bytes read but not yet taken as lines
  size_t line_number_ = 0;
  bool ended_ = false;
};

}  // namespace kiln::data
