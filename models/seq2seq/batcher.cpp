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
  std::string error;  // set when translating some of its sentences failed
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
    // are all taken leaves the queue (the worker keeps it through `parts` until it is answered).
    struct Part {
      std::shared_ptr<Job> job;
      size_t first;       // the job's index of the sentence in row `begin`
      size_t begin, end;  // rows of `batch`
    };
    std::vector<std::string> batch;
    std::vector<Part> parts;
    for (auto it = queue_.begin();
         it != queue_.end() && static_cast<int64_t>(batch.size()) < batch_size_;) {
      Job& job = **it;
      if (!(job.settings == settings)) {
        ++it;
        continue;
      }
      Part part{*it, job.taken, batch.size(), batch.size()};
      while (job.taken < job.sentences.size() && static_cast<int64_t>(batch.size()) < batch_size_) {
        batch.push_back(job.sentences[job.taken++]);
      }
      part.end = batch.size();
      parts.push_back(part);
      it = job.taken == job.sentences.size() ? queue_.erase(it) : std::next(it);
    }

    // The model runs without the lock, so requests keep arriving meanwhile.
    lock.unlock();
    int64_t calls = 0;
    auto attempt = [&](size_t begin, size_t end, Translations& out) -> std::string {
      ++calls;
      try {
        out = translate_({batch.begin() + begin, batch.begin() + end}, settings);
        KILN_CHECK(out.size() == end - begin, "Batcher: ", out.size(), " results for ", end - begin,
                   " sentences");
        return "";
      } catch (const std::exception& e) {
        return std::string("translation failed: ") + e.what();
      }
    };
    Translations results;
    std::vector<std::string> errors(parts.size());
    errors[0] = attempt(0, batch.size(), results);
    if (!errors[0].empty() && parts.size() > 1) {
      // A sentence of one request may be the cause: retried request by request, it fails alone.
      results.assign(batch.size(), {});
      for (size_t i = 0; i < parts.size(); ++i) {
        Translations part_results;
        errors[i] = attempt(parts[i].begin, parts[i].end, part_results);
        std::move(part_results.begin(), part_results.end(), results.begin() + parts[i].begin);
      }
    }
    lock.lock();

    stats_.batches += calls;
    stats_.largest_batch = std::max<int64_t>(stats_.largest_batch, batch.size());
    for (size_t i = 0; i < parts.size(); ++i) {
      Job& job = *parts[i].job;
      if (!errors[i].empty()) {
        // A failed job answers now, without its sentences still queued.
        job.error = errors[i];
        job.finished = true;
        queue_.erase(std::remove(queue_.begin(), queue_.end(), parts[i].job), queue_.end());
        continue;
      }
      for (size_t row = parts[i].begin; row < parts[i].end; ++row) {
        job.results[parts[i].first + row - parts[i].begin] = std::move(results[row]);
      }
      stats_.sentences += static_cast<int64_t>(parts[i].end - parts[i].begin);
      job.answered += parts[i].end - parts[i].begin;
      job.finished |= job.answered == job.sentences.size();
    }
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
