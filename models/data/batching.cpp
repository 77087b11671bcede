// Ordering pairs into batches and laying each batch out as time-major tensors (see batching.h).
#include "models/data/batching.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "core/error.h"
#include "models/data/shuffle.h"

namespace kiln::data {

namespace {

void check_pairs(const std::vector<EncodedPair>& pairs) {
  const auto check = [](const std::vector<int64_t>& ids, size_t pair, const char* side) {
    for (size_t t = 0; t < ids.size(); ++t) {
      KILN_CHECK(ids[t] > 0, "make_batches: pair ", pair, " ", side, " position ", t, " holds id ",
                 ids[t], (ids[t] == Vocab::pad_id ? " (<pad>)" : ""),
                 "; encoded sentences need ids > 0, <pad> = 0 marks padding");
    }
  };
  for (size_t i = 0; i < pairs.size(); ++i) {
    check(pairs[i].source, i, "source");
    check(pairs[i].target, i, "target");
  }
}

// `ids` + <eos> (when append_eos), then cut to num_steps when num_steps > 0.
std::vector<int64_t> with_eos(const std::vector<int64_t>& ids, bool append_eos, int64_t num_steps) {
  std::vector<int64_t> out = ids;
  if (append_eos) out.push_back(Vocab::eos_id);
  if (num_steps > 0 && static_cast<int64_t>(out.size()) > num_steps) out.resize(num_steps);
  return out;
}

// Lays sequences out as [steps, B] (column b = sequence b), <pad> after each one's end.
std::vector<int64_t> time_major(const std::vector<std::vector<int64_t>>& columns, int64_t steps) {
  const int64_t batch = static_cast<int64_t>(columns.size());
  std::vector<int64_t> out(static_cast<size_t>(steps * batch), Vocab::pad_id);
  for (int64_t b = 0; b < batch; ++b) {
    const std::vector<int64_t>& column = columns[static_cast<size_t>(b)];
    for (size_t t = 0; t < column.size(); ++t) out[t * batch + b] = column[t];
  }
  return out;
}

}  // namespace

Batch make_batch(const std::vector<EncodedPair>& pairs, std::vector<int64_t> indices,
                 const BatchOptions& options, Device device) {
  const int64_t batch = static_cast<int64_t>(indices.size());
  std::vector<std::vector<int64_t>> sources, targets;
  std::vector<int64_t> source_lengths;
  int64_t steps_source = 1, steps_target = 1;  // at least one step, even for empty sentences
  for (int64_t index : indices) {
    const EncodedPair& pair = pairs[static_cast<size_t>(index)];
    sources.push_back(with_eos(pair.source, options.source_eos, options.num_steps));
    targets.push_back(with_eos(pair.target, true, options.num_steps));
    source_lengths.push_back(static_cast<int64_t>(sources.back().size()));
    steps_source = std::max(steps_source, source_lengths.back());
    steps_target = std::max(steps_target, static_cast<int64_t>(targets.back().size()));
  }
  if (options.num_steps > 0) {
    steps_source = steps_target = options.num_steps;
  } else if (options.pad_steps_to > 1) {
    auto round_up = [&](int64_t steps) {
      return (steps + options.pad_steps_to - 1) / options.pad_steps_to * options.pad_steps_to;
    };
    steps_source = round_up(steps_source);
    steps_target = round_up(steps_target);
  }

  const std::vector<int64_t> target_out = time_major(targets, steps_target);
  std::vector<int64_t> target_in(target_out.size(), Vocab::pad_id);
  std::vector<float> mask(target_out.size(), 0.0f);
  int64_t num_tokens = 0;
  for (int64_t b = 0; b < batch; ++b) target_in[b] = Vocab::bos_id;
  for (size_t i = static_cast<size_t>(batch); i < target_out.size(); ++i) {
    target_in[i] = target_out[i - batch];  // one step later, same column
  }
  for (size_t i = 0; i < target_out.size(); ++i) {
    if (target_out[i] != Vocab::pad_id) {
      mask[i] = 1.0f;
      ++num_tokens;
    }
  }

  Batch out;
  // Each id tensor on the host and on the device (one tensor for both on a CPU run).
  auto both = [&](const auto& values, const Shape& shape, Tensor& host, Tensor& on_device) {
    host = from_vector(values, shape);
    on_device = device.is_cpu() ? host : from_vector(values, shape, device);
  };
  both(time_major(sources, steps_source), {steps_source, batch}, out.host_source, out.source);
  both(source_lengths, {batch}, out.host_source_lengths, out.source_lengths);
  both(target_in, {steps_target, batch}, out.host_target_in, out.target_in);
  both(target_out, {steps_target, batch}, out.host_target_out, out.target_out);
  both(mask, {steps_target, batch}, out.host_target_mask, out.target_mask);
  out.num_target_tokens = num_tokens;
  out.indices = std::move(indices);
  return out;
}

namespace {
// The real target tokens of one pair in a batch: with <eos>, cut to num_steps.
int64_t target_tokens(const EncodedPair& pair, const BatchOptions& options) {
  const int64_t length = static_cast<int64_t>(pair.target.size()) + 1;
  return options.num_steps > 0 ? std::min(length, options.num_steps) : length;
}
}  // namespace

int64_t count_target_tokens(const std::vector<EncodedPair>& pairs,
                            const std::vector<int64_t>& indices, const BatchOptions& options) {
  int64_t tokens = 0;
  for (int64_t index : indices) tokens += target_tokens(pairs[static_cast<size_t>(index)], options);
  return tokens;
}

std::pair<size_t, size_t> rank_share(const std::vector<EncodedPair>& pairs,
                                     const std::vector<int64_t>& indices,
                                     const BatchOptions& options, int rank, int world_size) {
  KILN_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "rank_share: rank ", rank,
             " of a world of ", world_size);
  const int64_t total = count_target_tokens(pairs, indices, options);
  // The first column whose preceding tokens reach k / world_size of the total (in integers:
  // preceding * world_size >= k * total).
  auto start_of = [&](int k) {
    int64_t preceding = 0;
    for (size_t column = 0; column < indices.size(); ++column) {
      if (preceding * world_size >= int64_t{k} * total) return column;
      preceding += target_tokens(pairs[static_cast<size_t>(indices[column])], options);
    }
    return indices.size();
  };
  return {start_of(rank), start_of(rank + 1)};
}

std::vector<std::vector<int64_t>> plan_batches(const std::vector<EncodedPair>& pairs,
                                               const BatchOptions& options) {
  KILN_CHECK(options.batch_size >= 1, "make_batches: batch_size must be >= 1, got ",
             options.batch_size);
  KILN_CHECK(options.num_steps == -1 || options.num_steps >= 1, "make_batches: num_steps must be ",
             "-1 (longest in the batch) or >= 1, got ", options.num_steps);
  KILN_CHECK(options.batch_tokens >= 0, "make_batches: batch_tokens must be >= 0, got ",
             options.batch_tokens);
  KILN_CHECK(options.batch_tokens == 0 || !options.drop_last,
             "make_batches: drop_last has no remainder batch to drop with batch_tokens");
  const bool by_tokens = options.batch_tokens > 0;
  const bool bucket = options.bucket_by_length || by_tokens;

  std::mt19937_64 generator(options.seed);
  std::vector<int64_t> order(pairs.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  if (bucket) {
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      const EncodedPair& x = pairs[static_cast<size_t>(a)];
      const EncodedPair& y = pairs[static_cast<size_t>(b)];
      if (x.source.size() != y.source.size()) return x.source.size() < y.source.size();
      return x.target.size() < y.target.size();
    });
  } else if (options.shuffle) {
    shuffle_in_place(order, generator);
  }

  std::vector<std::vector<int64_t>> chunks;
  if (by_tokens) {
    // Greedy: a pair joins the current batch while rows x longest target stays in the budget.
    int64_t longest = 0;
    for (int64_t index : order) {
      const int64_t length =
          options.num_steps > 0
              ? options.num_steps
              : static_cast<int64_t>(pairs[static_cast<size_t>(index)].target.size()) + 1;
      const int64_t rows = chunks.empty() ? 0 : static_cast<int64_t>(chunks.back().size());
      if (rows == 0 || std::max(longest, length) * (rows + 1) > options.batch_tokens) {
        chunks.emplace_back();
        longest = 0;
      }
      chunks.back().push_back(index);
      longest = std::max(longest, length);
    }
  } else {
    const size_t size = static_cast<size_t>(options.batch_size);
    for (size_t start = 0; start < order.size(); start += size) {
      const size_t end = std::min(order.size(), start + size);
      if (options.drop_last && end - start < size) break;
      chunks.emplace_back(order.begin() + start, order.begin() + end);
    }
  }
  if (bucket && options.shuffle) shuffle_in_place(chunks, generator);
  return chunks;
}

std::vector<Batch> make_batches(const std::vector<EncodedPair>& pairs, const BatchOptions& options,
                                Device device) {
  check_pairs(pairs);
  std::vector<Batch> batches;
  for (std::vector<int64_t>& chunk : plan_batches(pairs, options)) {
    batches.push_back(make_batch(pairs, std::move(chunk), options, device));
  }
  return batches;
}

std::vector<EncodedPair> encode_pairs(const std::vector<std::vector<std::string>>& source_tokens,
                                      const std::vector<std::vector<std::string>>& target_tokens,
                                      const Vocab& source_vocab, const Vocab& target_vocab) {
  KILN_CHECK(source_tokens.size() == target_tokens.size(), "encode_pairs: ", source_tokens.size(),
             " source sentences but ", target_tokens.size(), " target sentences");
  std::vector<EncodedPair> pairs;
  pairs.reserve(source_tokens.size());
  for (size_t i = 0; i < source_tokens.size(); ++i) {
    pairs.push_back({source_vocab.encode(source_tokens[i]), target_vocab.encode(target_tokens[i])});
  }
  return pairs;
}

}  // namespace kiln::data
