// The batching behind `kiln serve`: requests from many threads are queued, and one worker thread,
// the only one that touches the model, gathers the sentences of requests with the same decoding
// settings into batches of up to `batch_size` sentences. A batch leaves when it is full or when its
// oldest request has waited `wait` (or at once when the worker was busy for longer than that);
// a request larger than a batch is split over several. Each request gets its own results back;
// when a batch of several requests fails, they are retried one by one, so that a sentence the
// model cannot translate fails only its own request.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kiln::seq2seq {

// How a sentence is decoded; only sentences with equal settings share a batch.
struct DecodeSettings {
  int64_t beam = 1, n_best = 1;
  double length_penalty = 1.0;
  bool operator==(const DecodeSettings& o) const {
    return beam == o.beam && n_best == o.n_best && length_penalty == o.length_penalty;
  }
};

// One hypothesis as the client sees it: detokenized text and its score.
struct Translation {
  std::string text;
  double score = 0;
};
using Translations = std::vector<std::vector<Translation>>;  // [sentence][hypothesis]

struct BatcherStats {
  int64_t in_flight = 0;      // requests waiting for their results now
  int64_t requests = 0;       // answered, with results or an error
  int64_t sentences = 0;      // translated
  int64_t batches = 0;        // calls of the translate function (retries included)
  int64_t largest_batch = 0;  // sentences in the largest of them
};

class Batcher {
 public:
  // Translates one batch of sentences with one set of settings; run on the worker thread only.
  using TranslateFn =
      std::function<Translations(const std::vector<std::string>&, const DecodeSettings&)>;

  Batcher(TranslateFn translate, int64_t batch_size, std::chrono::milliseconds wait);
  ~Batcher();  // stop()
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Blocks until the sentences are translated. Throws kiln::Error with the translate function's
  // message when it failed, or when the batcher stopped before the request ran.
  Translations translate(std::vector<std::string> sentences, const DecodeSettings& settings);
  // Finishes the batch being translated, fails the requests still queued, joins the worker.
  void stop();
  BatcherStats stats() const;

 private:
  struct Job;
  void run();
  // Sentences of queued jobs with `settings` not yet handed to the worker.
  int64_t pending(const DecodeSettings& settings) const;

  TranslateFn translate_;
  int64_t batch_size_;
  std::chrono::milliseconds wait_;
  mutable std::mutex mutex_;
  std::condition_variable work_;            // the worker waits here for jobs
  std::condition_variable done_;            // requesters wait here for their results
  std::deque<std::shared_ptr<Job>> queue_;  // jobs with sentences not yet taken, oldest first
  BatcherStats stats_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace kiln::seq2seq
