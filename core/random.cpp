#include "core/random.h"

namespace kiln {

// One generator per process, seeded by manual_seed; the factories and dropout draw from it.
Generator& default_generator() {
  static Generator generator;
  return generator;
}

}  // namespace kiln
