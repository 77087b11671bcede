#include "kernels/dropout.h"

#include "kernels/dispatch.h"

namespace kiln::kernels {

void dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed, uint64_t offset) {
  KILN_DISPATCH_FLOAT(x.dtype(), "dropout", [&] {
    parallel_for(x.device(), x.numel(),
                 DropoutFunctor<scalar_t>{x.data<scalar_t>(), y.data<scalar_t>(), seed, offset,
                                          static_cast<float>(p), scalar_t(1.0 / (1.0 - p))});
  });
}

}  // namespace kiln::kernels
