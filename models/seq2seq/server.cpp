// `kiln serve` (see server.h): the HTTP routes, the request reader and the shutdown on signals.
#include "models/seq2seq/server.h"

#include <httplib.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstring>
#include <exception>

#include "core/cuda_runtime.h"
#include "core/error.h"
#include "models/data/utf8.h"
#include "models/seq2seq/batcher.h"
#include "models/seq2seq/config.h"
#include "models/seq2seq/json_util.h"
#include "models/seq2seq/translator.h"

namespace kiln::seq2seq {

void ServeOptions::validate() const {
  KILN_CHECK(!checkpoint.empty(), "--checkpoint: required");
  KILN_CHECK(port >= 0 && port <= 65535, "--port: must be in [0, 65535], got ", port);
  auto positive = [](const char* flag, int64_t value) {
    KILN_CHECK(value > 0, flag, ": must be > 0, got ", value);
  };
  positive("--batch-size", batch_size);
  KILN_CHECK(batch_wait_ms >= 0 && batch_wait_ms <= 60000,
             "--batch-wait-ms: must be in [0, 60000], got ", batch_wait_ms);
  positive("--max-body-bytes", max_body_bytes);
  positive("--max-sentences", max_sentences);
  positive("--max-sentence-bytes", max_sentence_bytes);
  positive("--max-beam", max_beam);
  KILN_CHECK(threads > 0 && threads <= 1024, "--threads: must be in [1, 1024], got ", threads);
  KILN_CHECK(shortlist >= 0, "--shortlist: must be > 0 (or 0: off), got ", shortlist);
}

namespace {

using Json = nlohmann::ordered_json;  // replies keep their fields in the order written

struct TranslateRequest {
  std::vector<std::string> sentences;
  DecodeSettings settings;
};

// The body of POST /translate, checked field by field; errors name the field ("request: field
// 'beam': expected an integer in [1, 16], got 0").
TranslateRequest read_request(const std::string& body, const ServeOptions& limits) {
  JsonReader reader(body, "request");
  TranslateRequest r;
  r.sentences = reader.strings("text", std::nullopt);
  r.settings.beam = reader.integer("beam", 1, 1, limits.max_beam);
  r.settings.n_best = reader.integer("n_best", 1, 1, limits.max_beam);
  r.settings.length_penalty = reader.number("length_penalty", 1.0, 0.0, 10.0);
  reader.reject_unknown_fields();
  KILN_CHECK(r.settings.n_best <= r.settings.beam, "request: field 'n_best': ", r.settings.n_best,
             " exceeds beam ", r.settings.beam);
  KILN_CHECK(static_cast<int64_t>(r.sentences.size()) <= limits.max_sentences,
             "request: field 'text': ", r.sentences.size(), " sentences, more than the limit of ",
             limits.max_sentences, " (--max-sentences)");
  for (size_t i = 0; i < r.sentences.size(); ++i) {
    const std::string& s = r.sentences[i];
    KILN_CHECK(static_cast<int64_t>(s.size()) <= limits.max_sentence_bytes, "request: field 'text[",
               i, "]': ", s.size(), " bytes, more than the limit of ", limits.max_sentence_bytes,
               " (--max-sentence-bytes)");
    // The JSON parser already refuses ill-formed UTF-8; this keeps the promise in one place.
    KILN_CHECK(data::valid_utf8(s), "request: field 'text[", i, "]': invalid UTF-8 at byte ",
               data::first_invalid_utf8(s));
  }
  return r;
}

// Replies with `value` as JSON. Invalid UTF-8 (an error message quoting a bad request) is written
// as U+FFFD rather than failing the reply.
void reply(httplib::Response& res, int status, const Json& value) {
  res.status = status;
  res.set_content(value.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n",
                  "application/json");
}

// An error reply; messages quoting a request are cut to a readable length.
void reply_error(httplib::Response& res, int status, std::string message) {
  const size_t limit = 500;
  if (message.size() > limit) message = message.substr(0, limit) + "...";
  reply(res, status, {{"error", message}});
}

// Blocks SIGINT and SIGTERM in the calling thread, and so in every thread it starts (the batcher,
// the HTTP pool, OpenMP's); a watcher thread takes them with sigtimedwait instead of a handler,
// so stopping the server happens in an ordinary thread.
class SignalWatcher {
 public:
  SignalWatcher() {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, &previous_);
  }
  ~SignalWatcher() {
    join();
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  // Calls `on_signal(name)` for the first signal, then `stop()` every 100 ms until join(): a stop
  // that came before the server was running would otherwise be lost.
  void start(std::function<void(const char*)> on_signal, std::function<void()> stop) {
    thread_ = std::thread([this, on_signal, stop] {
      bool stopping = false;
      while (!done_) {
        timespec timeout{0, 100 * 1000 * 1000};
        int signal = sigtimedwait(&signals_, nullptr, &timeout);
        if (signal > 0 && !stopping) on_signal(signal == SIGINT ? "SIGINT" : "SIGTERM");
        stopping |= signal > 0;
        if (stopping) stop();
      }
    });
  }
  void join() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  sigset_t signals_, previous_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

Json health(const ServeOptions& o, const Translator& t, const BatcherStats& s) {
  const ModelConfig& m = t.options.model;
  return {{"status", "ok"},
          {"checkpoint", o.checkpoint},
          {"model",
           {{"cell", cell_name(m.cell)},
            {"attention", attention_name(m.attention)},
            {"layers", m.num_layers},
            {"hidden_size", m.hidden_size},
            {"source_vocab", m.source_vocab},
            {"target_vocab", m.target_vocab},
            {"tokenizer", t.options.tokenizer},
            {"max_source_length", t.options.max_source_length},
            {"device", t.device.str()}}},
          {"limits",
           {{"max_body_bytes", o.max_body_bytes},
            {"max_sentences", o.max_sentences},
            {"max_sentence_bytes", o.max_sentence_bytes},
            {"max_beam", o.max_beam},
            {"batch_size", o.batch_size},
            {"batch_wait_ms", o.batch_wait_ms}}},
          {"stats",
           {{"in_flight", s.in_flight},
            {"requests", s.requests},
            {"sentences", s.sentences},
            {"batches", s.batches},
            {"largest_batch", s.largest_batch}}}};
}

}  // namespace

int serve(const ServeOptions& o, const std::function<void(const std::string&)>& log) {
  o.validate();
  SignalWatcher signals;  // first: every thread started below inherits the blocked signals
  const Translator translator = Translator::load(o.checkpoint, o.device);
  TranslateOptions decoding;  // what every request shares; its beam and n-best are its own
  decoding.shortlist = o.shortlist;
  translator.check(decoding);  // a checkpoint without the shortlist's table: an error, at start
  const ModelConfig& m = translator.options.model;
  log(detail::concat("kiln serve: ", o.checkpoint, ": ", cell_name(m.cell), ", ",
                     attention_name(m.attention), " attention, vocabularies ", m.source_vocab, "/",
                     m.target_vocab, ", on ", translator.device.str(), "; batches of up to ",
                     o.batch_size, " sentences, waiting up to ", o.batch_wait_ms, " ms",
                     o.shortlist > 0 ? detail::concat("; shortlist ", o.shortlist) : ""));

  // The worker thread is the only one that runs the model, the tokenizers and the vocabularies;
  // the HTTP threads only read JSON. Grad mode is per thread (the search turns it off on the
  // worker), and a model in eval mode draws nothing from the process-wide default generator.
  Batcher batcher(
      [&translator, decoding](const std::vector<std::string>& sentences, const DecodeSettings& s) {
        // CUDA's current device is per thread, and this one's starts at cuda:0.
        if (translator.device.is_cuda()) cuda::set_device(translator.device.index);
        TranslateOptions how = decoding;
        how.beam_size = s.beam;
        how.n_best = s.n_best;
        how.length_penalty = s.length_penalty;
        Translations out;
        for (const auto& hypotheses : translator.translate(sentences, how)) {
          std::vector<Translation>& list = out.emplace_back();
          for (const Hypothesis& h : hypotheses) list.push_back({translator.to_text(h), h.score});
        }
        return out;
      },
      o.batch_size, std::chrono::milliseconds(o.batch_wait_ms));

  httplib::Server server;
  server.new_task_queue = [threads = o.threads] {
    return new httplib::ThreadPool(static_cast<size_t>(threads));
  };
  server.set_payload_max_length(static_cast<size_t>(o.max_body_bytes));
  // An idle keep-alive connection holds its HTTP thread, and so the shutdown, this long.
  server.set_keep_alive_timeout(2);

  server.Post("/translate", [&](const httplib::Request& req, httplib::Response& res) {
    TranslateRequest request;
    try {
      request = read_request(req.body, o);
    } catch (const Error& e) {
      return reply_error(res, 400, e.what());
    }
    try {
      Translations results = batcher.translate(std::move(request.sentences), request.settings);
      Json translations = Json::array();
      for (const auto& hypotheses : results) {
        Json list = Json::array();
        for (const Translation& t : hypotheses)
          list.push_back({{"text", t.text}, {"score", t.score}});
        translations.push_back(std::move(list));
      }
      reply(res, 200, {{"translations", std::move(translations)}});
    } catch (const std::exception& e) {
      reply_error(res, 500, e.what());
    }
  });
  server.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    reply(res, 200, health(o, translator, batcher.stats()));
  });
  // The known paths answer other methods with 405 and the one they take.
  auto wrong_method = [](const char* allowed) {
    return [allowed](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Allow", allowed);
      reply_error(res, 405, req.method + " " + req.path + ": method not allowed, use " + allowed);
    };
  };
  server.Get("/translate", wrong_method("POST"))
      .Put("/translate", wrong_method("POST"))
      .Patch("/translate", wrong_method("POST"))
      .Delete("/translate", wrong_method("POST"))
      .Options("/translate", wrong_method("POST"))
      .Post("/health", wrong_method("GET"))
      .Put("/health", wrong_method("GET"))
      .Patch("/health", wrong_method("GET"))
      .Delete("/health", wrong_method("GET"))
      .Options("/health", wrong_method("GET"));
  // httplib's own errors (no route, a body over the limit, a malformed request) get a JSON body
  // too; replies the routes wrote are kept.
  server.set_error_handler([&o](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      reply_error(res, 404,
                  "no such path '" + req.path + "': the API is POST /translate and GET /health");
    } else if (res.status == 413) {
      reply_error(res, 413,
                  detail::concat("request body over the limit of ", o.max_body_bytes,
                                 " bytes (--max-body-bytes)"));
    } else {
      reply_error(res, res.status, detail::concat("HTTP error ", res.status));
    }
  });
  server.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr error) {
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          reply_error(res, 500, e.what());
        } catch (...) {
          reply_error(res, 500, "unknown error");
        }
      });

  int port = o.port;
  if (port == 0) {
    port = server.bind_to_any_port(o.host);
    KILN_CHECK(port > 0, "--host ", o.host, ": cannot listen on any port: ", std::strerror(errno));
  } else {
    KILN_CHECK(server.bind_to_port(o.host, port), "--host ", o.host, " --port ", port,
               ": cannot listen there: ", std::strerror(errno));
  }
  log(detail::concat("kiln serve: listening on http://", o.host, ":", port));

  std::atomic<bool> signalled{false};
  signals.start(
      [&](const char* name) {
        signalled = true;
        log(detail::concat("kiln serve: ", name, ": stopping, finishing the requests in flight"));
      },
      [&] { server.stop(); });
  // Returns once stopped, after the HTTP threads, and so the requests in flight, have finished.
  server.listen_after_bind();
  signals.join();  // before `server` goes: the watcher calls its stop()
  KILN_CHECK(signalled, "kiln serve: stopped listening on http://", o.host, ":", port,
             " without a signal");
  batcher.stop();
  const BatcherStats s = batcher.stats();
  log(detail::concat("kiln serve: stopped after ", s.requests, " requests, ", s.sentences,
                     " sentences in ", s.batches, " batches"));
  return 0;
}

}  // namespace kiln::seq2seq
