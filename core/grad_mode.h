// Whether ops record on the autograd tape (per thread). NoGradGuard turns recording off for a
// scope: inference, optimizer steps, and the backward pass itself. The flag lives in core because
// layers below autograd read it too (in-place updates refuse a tensor that requires grad while
// recording is on); autograd is what acts on it.
#pragma once

namespace kiln {

struct GradMode {
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

class NoGradGuard {
 public:
  NoGradGuard() : previous_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace kiln
