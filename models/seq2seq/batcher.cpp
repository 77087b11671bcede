// The request batcher of `kiln serve` (see batcher.h).
#include "models/seq2seq/batcher.h"

#include <algorithm>
#include <exception>

#include "core/error.h"

namespace kiln::seq2seq {

// One request: its sentences, how many the worker has taken and answered, and its results. Shared
// by the requester and the worker; every field is guarded by Batcher::mutex_.
struct Batcher::Job {
  std::vector<std::string> sentences;
  DecodeSettings settings;
  std::chrono::steady_clock::time_point arrived;
  size_t taken = 0, answered = 0;
  Translations results;
  std::string error;  // set when a batch holding some of its sentences failed
  bool finished = false;
};

Batcher::Batcher(TranslateFn translate, int64_t batch_size, std::chrono::milliseconds wait)
    : translate_(std::move(translate)), batch_size_(batch_size), wait_(wait) {
  KILN_CHECK(batch_size_ > 0, "Batcher: batch size must be > 0, got ", batch_size_);
  worker_ = std::thread([this] { run(); });
}

Batcher::~Batcher() { stop(); }

Translations Batcher::translate(std::vector<std::string> sentences,
                                const DecodeSettings& settings) {
  auto job = std::make_shared<Job>();
  job->results.resize(sentences.size());
  job->sentences = std::move(sentences);
  job->settings = settings;
  job->arrived = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  if (job->sentences.empty()) {
    ++stats_.requests;
    return {};
  }
  KILN_CHECK(!stopping_, "the server is shutting down");
  queue_.push_back(job);
  ++stats_.in_flight;
  work_.notify_one();
  done_.wait(lock, [&] { return job->finished; });
  --stats_.in_flight;
  ++stats_.requests;
  if (!job->error.empty()) throw Error(job->error);
  return std::move(job->results);
}

int64_t Batcher::pending(const DecodeSettings& settings) const {
  int64_t count = 0;
  for (const auto& job : queue_) {
    if (job->settings == settings)
      count += static_cast<int64_t>(job->sentences.size() - job->taken);
  }
  return count;
}

void Batcher::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) break;
    // The oldest request sets the settings and the deadline: wait for a full batch until then.
    const DecodeSettings settings = queue_.front()->settings;
    work_.wait_until(lock, queue_.front()->arrived + wait_,
                     [&] { return stopping_ || pending(settings) >= batch_size_; });
    if (stopping_) break;

    // Take sentences in arrival order from the jobs with these settings; a job whose sentences
    // are all taken leaves the queue (the worker keeps it through `slots` until it is answered).
    std::vector<std::string> batch;
    std::vector<std::pair<std::shared_ptr<Job>, size_t>> slots;  // (job, sentence index) per row
    for (auto it = queue_.begin();
         it != queue_.end() && static_cast<int64_t>(batch.size()) < batch_size_;) {
      Job& job = **it;
      if (!(job.settings == settings)) {
        ++it;
        continue;
      }
      while (job.taken < job.sentences.size() && static_cast<int64_t>(batch.size()) < batch_size_) {
        slots.emplace_back(*it, job.taken);
        batch.push_back(job.sentences[job.taken++]);
      }
      it = job.taken == job.sentences.size() ? queue_.erase(it) : std::next(it);
    }

    // The model runs without the lock, so requests keep arriving meanwhile.
    lock.unlock();
    Translations results;
    std::string error;
    try {
      results = translate_(batch, settings);
      KILN_CHECK(results.size() == batch.size(), "Batcher: ", results.size(),
                 " results for a batch of ", batch.size(), " sentences");
    } catch (const std::exception& e) {
      error = e.what();
    }
    lock.lock();

    ++stats_.batches;
    stats_.largest_batch = std::max<int64_t>(stats_.largest_batch, batch.size());
    if (error.empty()) stats_.sentences += static_cast<int64_t>(batch.size());
    for (size_t row = 0; row < slots.size(); ++row) {
      Job& job = *slots[row].first;
      if (error.empty()) {
        job.results[slots[row].second] = std::move(results[row]);
      } else if (job.error.empty()) {
        job.error = "translation failed: " + error;
      }
      job.finished = ++job.answered == job.sentences.size();
    }
    // A failed job answers now, without its sentences still queued.
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->error.empty()) {
        ++it;
        continue;
      }
      (*it)->finished = true;
      it = queue_.erase(it);
    }
    for (const auto& slot : slots) slot.first->finished |= !slot.first->error.empty();
    done_.notify_all();
  }
  for (const auto& job : queue_) {
    job->error = "the server is shutting down";
    job->finished = true;
  }
  queue_.clear();
  done_.notify_all();
}

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_.notify_all();
  if (worker_.joinable()) worker_.join();
}

BatcherStats Batcher::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

}  // namespace kiln::seq2seq
