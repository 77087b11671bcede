// Batches of token ids as kiln tensors, time-major ([steps, batch]), for a Seq2Seq model.
//
// For one pair with source ids x1..xm and target ids y1..yn (no <bos>/<eos> in them):
//   source sequence  = x1..xm <eos>        (without <eos> when BatchOptions::source_eos is false)
//   target_out       = y1..yn <eos>
//   target_in[0]     = <bos>,  target_in[t] = target_out[t-1] for t >= 1
// With num_steps > 0 every sequence is then cut to its first num_steps tokens or padded with
// <pad> to num_steps, exactly d2l 1.0's MTFraEng._build_arrays (tokens + ['<eos>'], then
// truncate or pad): a sequence that is cut loses its <eos>, and target_in, being target_out
// shifted right under <bos>, holds the <eos> at the step after the last real input, where
// target_out (and the mask) is already padding. With num_steps == -1 the lengths are the longest
// in the batch, so nothing is cut. source_lengths counts the real source tokens (<eos> included);
// target_mask is 1 exactly where target_out is not <pad>.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "models/data/vocab.h"

namespace kiln::data {

// Ids without <bos>/<eos>; none may be <pad> (0) or negative.
struct EncodedPair {
  std::vector<int64_t> source, target;
};

struct Batch {
  Tensor source;          // [S, B] i64, <pad> after each sequence's end
  Tensor source_lengths;  // [B] i64, real tokens in each source column (<eos> included)
  Tensor target_in;       // [T, B] i64: <bos> y1 .. (target_out shifted right by one step)
  Tensor target_out;      // [T, B] i64: y1 .. yn <eos>, padded with <pad>
  Tensor target_mask;     // [T, B] f32: 1 on real target_out tokens (<eos> included), 0 on <pad>
  int64_t num_target_tokens = 0;  // sum of target_mask
  std::vector<int64_t> indices;   // which pairs (indices into the encoded dataset), in column order
  // The ids, lengths and mask above as made on the host (CPU tensors; the same tensors on a CPU
  // run): what the model's index checks and the loss's choice of real tokens read instead of the
  // device's copies (seq2seq::HostCopies).
  Tensor host_source, host_source_lengths, host_target_in, host_target_out, host_target_mask;
};

struct BatchOptions {
  int64_t batch_size = 64;
  // > 0: every sequence cut or padded to num_steps tokens counting <eos>, as d2l (see above);
  // -1: S and T are the longest source / target in each batch.
  int64_t num_steps = -1;
  // true: pairs sorted by (source length, target length), stable, then cut into batches, so a
  // batch holds sentences of similar length; shuffle then permutes the order of the batches.
  // false: shuffle permutes the pairs, then they are cut into batches.
  bool bucket_by_length = true;
  // false: no permutation at all (file order without bucketing, length order with it).
  bool shuffle = true;
  uint64_t seed = 0;  // std::mt19937_64 + our Fisher-Yates (shuffle.h): same batches everywhere
  // Drop the remainder batch of fewer than batch_size pairs: the last in file order, or with
  // bucketing the longest pairs (before the batch order is shuffled).
  bool drop_last = false;
  bool source_eos = true;  // append <eos> to every source sequence (d2l does)
  // > 0: batches by tokens instead of batch_size pairs. Pairs sorted by length as with
  // bucket_by_length (whatever it says) are cut into runs whose padded target, rows x the longest
  // target (<eos> included; num_steps when > 0), stays <= batch_tokens; a pair over that alone
  // gets a batch of its own. shuffle then permutes the batches; drop_last must be false.
  int64_t batch_tokens = 0;
  // > 1 (with num_steps -1): S and T rounded up to a multiple of this, so that batches come in few
  // shapes (a CUDA-graph run captures one graph per shape). The extra steps are padding, masked
  // like any other.
  int64_t pad_steps_to = 1;
};

// The pairs of each batch (indices into `pairs`), in batch order: what make_batches lays out.
// How many there are does not depend on the seed.
std::vector<std::vector<int64_t>> plan_batches(const std::vector<EncodedPair>& pairs,
                                               const BatchOptions& options);

// Every pair lands in exactly one batch (but for the dropped remainder with drop_last). The
// tensors are created on `device`.
std::vector<Batch> make_batches(const std::vector<EncodedPair>& pairs, const BatchOptions& options,
                                Device device = Device::cpu());

// One batch of the pairs `indices`, in that column order, laid out as make_batches lays each out
// (indices must be valid and not empty; the pairs are not checked again).
Batch make_batch(const std::vector<EncodedPair>& pairs, std::vector<int64_t> indices,
                 const BatchOptions& options, Device device = Device::cpu());

// The real target tokens (<eos> included, cut to num_steps) of the pairs `indices`: the
// num_target_tokens make_batch would count, without building the batch.
int64_t count_target_tokens(const std::vector<EncodedPair>& pairs,
                            const std::vector<int64_t>& indices, const BatchOptions& options);

// Data parallelism: the columns [begin, end) of a batch of `indices` that rank `rank` of
// `world_size` trains on. The batch is cut into world_size consecutive runs with about equal
// target tokens (rank k's run starts at the first column whose preceding tokens reach k /
// world_size of the batch's), so the ranks' shares together are the batch, each column exactly
// once. A rank gets an empty run when the batch has fewer columns than there are ranks.
std::pair<size_t, size_t> rank_share(const std::vector<EncodedPair>& pairs,
                                     const std::vector<int64_t>& indices,
                                     const BatchOptions& options, int rank, int world_size);

// pairs[i] = {source_vocab.encode(source_tokens[i]), target_vocab.encode(target_tokens[i])}.
std::vector<EncodedPair> encode_pairs(const std::vector<std::vector<std::string>>& source_tokens,
                                      const std::vector<std::vector<std::string>>& target_tokens,
                                      const Vocab& source_vocab, const Vocab& target_vocab);

}  // namespace kiln::data
