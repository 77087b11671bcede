// Whether ops record on the autograd tape (per thread). NoGradGuard turns recording off for a
// scope: inference, optimizer steps, and the backward pass itself.
#pragma once

namespace kiln {

namespace autograd {
struct GradMode {
  static bool is_enabled();
  static void set_enabled(bool enabled);
};
}  // namespace autograd

class NoGradGuard {
 public:
  NoGradGuard() : previous_(autograd::GradMode::is_enabled()) { autograd::GradMode::set_enabled(false); }
  ~NoGradGuard() { autograd::GradMode::set_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace kiln
