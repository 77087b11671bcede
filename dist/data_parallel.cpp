#include "dist/data_parallel.h"

#include <unordered_map>

#include "autograd/node.h"
#include "core/error.h"
#include "core/grad_mode.h"
#include "core/profiler.h"
#include "kernels/factories.h"

namespace kiln::dist {

struct DataParallel::Bucket {
  std::vector<size_t> params;    // indices into params_, in packing order
  std::vector<int64_t> offsets;  // where each one's gradient starts in `flat`
  Tensor flat;                   // every gradient of the bucket, one after another
  size_t ready = 0;              // how many of `params` have a final gradient this backward
  std::unique_ptr<Work> work;    // the reduction in flight
};

namespace {
// For each parameter: did this rank have a gradient for it this step? Summed over the ranks once
// per step, so a gradient stays undefined only where no rank had one.
Tensor presence_counts(size_t n) { return zeros({static_cast<int64_t>(n)}, {DType::i32}); }
}  // namespace

DataParallel::DataParallel(std::vector<Tensor> parameters, DataParallelOptions options,
                           Communicator& comm)
    : params_(std::move(parameters)), options_(options), comm_(comm) {
  KILN_CHECK(options_.bucket_bytes > 0, "DataParallel: bucket_bytes must be > 0");
  std::unordered_map<TensorImpl*, size_t> seen;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    KILN_CHECK(p.defined() && p.requires_grad() && p.is_leaf(), "DataParallel: parameter ", i,
               " is not a leaf tensor that requires grad");
    KILN_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, "DataParallel: parameter ", i,
               " is ", p.describe(), "; gradients are reduced in f32 or f64");
    KILN_CHECK(seen.emplace(p.impl_ptr().get(), i).second, "DataParallel: parameter ", i,
               " is the same tensor as parameter ", seen[p.impl_ptr().get()],
               " (list each parameter once)");
  }
  // Reverse order: the last layers' gradients are final first. A bucket holds one dtype on one
  // device and is closed once it reaches bucket_bytes.
  size_t bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const Tensor& p = params_[k];
    bool fresh = buckets_.empty() || bytes >= options_.bucket_bytes;
    if (!fresh) {
      const Tensor& first = params_[buckets_.back()->params.front()];
      fresh = first.dtype() != p.dtype() || first.device() != p.device();
    }
    if (fresh) {
      buckets_.push_back(std::make_unique<Bucket>());
      bytes = 0;
    }
    Bucket& bucket = *buckets_.back();
    bucket.offsets.push_back(
        bucket.params.empty() ? 0 : bucket.offsets.back() + params_[bucket.params.back()].numel());
    bucket.params.push_back(k);
    bucket_of_[p.impl_ptr().get()] = buckets_.size() - 1;
    bytes += p.nbytes();
  }
  if (comm_.has_backend()) {
    for (auto& bucket : buckets_) {
      const Tensor& last = params_[bucket->params.back()];
      bucket->flat = empty({bucket->offsets.back() + last.numel()}, last.options());
    }
  }
  if (options_.broadcast_parameters) broadcast_parameters();
}

DataParallel::~DataParallel() = default;

const std::vector<size_t>& DataParallel::bucket(size_t b) const {
  KILN_CHECK(b < buckets_.size(), "DataParallel::bucket: ", b, " of ", buckets_.size());
  return buckets_[b]->params;
}

void DataParallel::broadcast_parameters() {
  if (!comm_.has_backend()) return;
  NoGradGuard no_grad;
  comm_.broadcast(params_, 0);
}

void DataParallel::backward(const Tensor& loss) {
  if (!comm_.has_backend()) {
    kiln::backward(loss);
    return;
  }
  start_reduction();
  kiln::backward(loss, Tensor(), false, [&](TensorImpl& leaf) {
    auto found = bucket_of_.find(&leaf);
    if (found == bucket_of_.end()) return;  // an input that requires grad, not a parameter
    buckets_[found->second]->ready++;
    if (options_.overlap) launch_ready_buckets();
  });
  finish_reduction();
}

void DataParallel::reduce_gradients() {
  if (!comm_.has_backend()) return;
  start_reduction();
  finish_reduction();
}

void DataParallel::start_reduction() {
  for (auto& bucket : buckets_) {
    bucket->ready = 0;
    bucket->work.reset();
  }
  next_to_launch_ = 0;
}

void DataParallel::finish_reduction() {
  // Parameters the graph never reached keep the gradient they had: send what is left, in order.
  NoGradGuard no_grad;
  while (next_to_launch_ < buckets_.size()) launch(*buckets_[next_to_launch_++]);

  Tensor presence = presence_counts(params_.size());
  int32_t* present = presence.data<int32_t>();
  for (size_t k = 0; k < params_.size(); ++k) present[k] = params_[k].grad().defined() ? 1 : 0;
  comm_.all_reduce(presence, ReduceOp::sum);
  for (auto& bucket : buckets_) {
    bucket->work->wait();
    for (size_t j = 0; j < bucket->params.size(); ++j) {
      Tensor& p = params_[bucket->params[j]];
      if (present[bucket->params[j]] == 0) continue;  // no rank had a gradient for it
      if (!p.grad().defined()) p.set_grad(empty(p.shape(), p.options()));
      copy_(p.grad(),
            view_as_shape(view_rows(bucket->flat, bucket->offsets[j], p.numel()), p.shape()));
    }
    bucket->work.reset();
  }
}

// Buckets go out strictly in order, so every rank issues the same collectives in the same order
// even when its graph finishes the gradients in another order.
void DataParallel::launch_ready_buckets() {
  while (next_to_launch_ < buckets_.size() &&
         buckets_[next_to_launch_]->ready == buckets_[next_to_launch_]->params.size()) {
    launch(*buckets_[next_to_launch_++]);
  }
  // MPI moves a non-blocking reduction forward only inside MPI calls: give the ones in flight a
  // turn while backward goes on.
  for (size_t b = 0; b < next_to_launch_; ++b) buckets_[b]->work->poke();
}

void DataParallel::launch(Bucket& bucket) {
  profiler::ProfileScope scope("DataParallel bucket", profiler::Category::kernel);
  NoGradGuard no_grad;
  for (size_t j = 0; j < bucket.params.size(); ++j) {
    const Tensor& p = params_[bucket.params[j]];
    Tensor slot = view_rows(bucket.flat, bucket.offsets[j], p.numel());
    if (p.grad().defined())
      copy_(slot, view_as_shape(p.grad(), {p.numel()}));
    else
      zero_(slot);
  }
  bucket.work = comm_.all_reduce_async(bucket.flat, options_.reduce);
}

}  // namespace kiln::dist
