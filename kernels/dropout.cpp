#include "kernels/dropout.h"

#include "kernels/dispatch.h"

namespace kiln::kernels {

void dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed, uint64_t offset,
             const uint64_t* seed_cell) {
  KILN_CHECK(!seed_cell || !x.device().is_cpu(), "dropout: a seed cell is device memory");
  KILN_DISPATCH_FLOAT(x.dtype(), "dropout", [&] {
    // A call per four elements, so the grain (in calls) is a quarter of the usual one in elements.
    parallel_for(x.device(), (x.numel() + 3) / 4,
                 DropoutFunctor<scalar_t>{x.data<scalar_t>(), y.data<scalar_t>(), x.numel(), seed,
                                          offset, seed_cell, static_cast<float>(p), scalar_t(1.0 / (1.0 - p))},
                 kParallelGrain / 4);
  });
}

}  // namespace kiln::kernels
