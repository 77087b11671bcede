// Compiled by the Layering.* tests with only core's include root (tests/CMakeLists.txt): core
// headers compile alone, and with KILN_BACK_INCLUDE a core file reaching up into nn does not.
#include "core/tensor.h"
#ifdef KILN_BACK_INCLUDE
#include "nn/module.h"
#endif

int main() { return kiln::Tensor().defined() ? 1 : 0; }
