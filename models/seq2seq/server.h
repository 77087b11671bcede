// `kiln serve`: a checkpoint behind an HTTP/JSON API (cpp-httplib), an ordinary user of the
// Translator. Requests from the HTTP threads are batched (batcher.h); one worker thread owns the
// model. The API, as README.md ("kiln serve") documents it:
//   POST /translate  {"text": ["...", ...], "beam": 1, "n_best": 1, "length_penalty": 1.0}
//                    -> 200 {"translations": [[{"text": "...", "score": -0.5}, ...], ...]}
//                    one list per input sentence, best first
//   GET  /health     -> 200 {"status": "ok", "model": {...}, "limits": {...}, "stats": {...}}
// Every error is {"error": "message"}: 400 for a bad request (the message names the field), 404
// for an unknown path, 405 for a wrong method, 413 for a body over max_body_bytes, 500 when the
// model failed on the request's sentences.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace kiln::seq2seq {

struct ServeOptions {
  std::string checkpoint;
  std::string device;  // empty: the one the checkpoint was trained on
  std::string host = "127.0.0.1";
  int port = 8080;                    // 0: any free port (the log line says which)
  int64_t batch_size = 32;            // sentences per model call
  int64_t batch_wait_ms = 10;         // how long a request may wait for others to fill its batch
  int64_t max_body_bytes = 1 << 20;   // larger bodies get 413
  int64_t max_sentences = 256;        // per request
  int64_t max_sentence_bytes = 2048;  // per sentence, in UTF-8 bytes
  int64_t max_beam = 16;              // the largest beam (and n_best) a request may ask for
  int64_t threads = 8;                // HTTP threads: requests served at once
  int64_t shortlist = 0;  // > 0: every batch decoded over a vocabulary shortlist (translator.h)

  // Errors name the flag of the first bad field ("--batch-size: must be > 0, got 0").
  void validate() const;
};

// Loads the checkpoint, listens and answers until SIGINT or SIGTERM, then stops listening, lets
// the requests in flight finish and returns 0. `log` gets the status lines; the first after the
// model line is "listening on http://HOST:PORT". Throws kiln::Error when the checkpoint does not
// load or the address cannot be bound.
int serve(const ServeOptions& options, const std::function<void(const std::string&)>& log);

}  // namespace kiln::seq2seq
