// Progress and epoch lines, metrics.jsonl and loss.svg (see report.h).
#include "models/seq2seq/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/durable_file.h"
#include "core/error.h"
#include "kernels/threads.h"
#include "models/data/text_file.h"

namespace kiln::seq2seq {

namespace {

// The file's bytes, or "" when it does not exist.
std::string existing_text(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return "";
  return data::read_text_file("metrics", path);
}

}  // namespace

std::string data_line(const Prepared& p) {
  std::string dropped = p.dropped_long == 0
                            ? ""
                            : " (" + std::to_string(p.dropped_long) + " dropped by --max-length " +
                                  std::to_string(p.max_length) + ")";
  std::string how =
      p.split_record ? ", random split (seed " + std::to_string(p.split_record->seed) + ")" : "";
  return "data: " + std::to_string(p.split.train.size()) + " train" + dropped + " / " +
         std::to_string(p.split.valid.size()) + " valid / " + std::to_string(p.split.test.size()) +
         " test pairs" + how + "; vocab " + std::to_string(p.source_vocab.size()) + " source, " +
         std::to_string(p.target_vocab.size()) + " target tokens";
}

namespace {
// "2 threads (automatic)": the CPU thread policy's count now and how it was chosen.
std::string threads_text() {
  const int n = num_threads();
  return std::to_string(n) + (n == 1 ? " thread (" : " threads (") + num_threads_source() + ")";
}
}  // namespace

std::string model_line(const ModelConfig& c, int64_t num_parameters, const Device& device) {
  return "model: " + std::string(cell_name(c.cell)) + " " + std::to_string(c.num_layers) + "x" +
         std::to_string(c.hidden_size) + ", embed " + std::to_string(c.embed_size) +
         ", attention " + attention_name(c.attention) + ", " + std::to_string(num_parameters) +
         " parameters, on " + device.str() + (device.is_cpu() ? ", " + threads_text() : "");
}

std::string format_duration(double seconds) {
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  char text[32];
  if (s >= 3600) {
    std::snprintf(text, sizeof text, "%ldh%02ldm", static_cast<long>(s / 3600),
                  static_cast<long>(s % 3600 / 60));
  } else {
    std::snprintf(text, sizeof text, "%ldm%02lds", static_cast<long>(s / 60),
                  static_cast<long>(s % 60));
  }
  return text;
}

double parse_duration(const std::string& text, const char* what) {
  double seconds = 0;
  size_t at = 0;
  bool bare = true;  // only a number, no unit
  while (at < text.size()) {
    size_t used = 0;
    double value = -1;
    if (std::isdigit(static_cast<unsigned char>(text[at])) || text[at] == '.') {
      try {
        value = std::stod(text.substr(at), &used);
      } catch (const std::exception&) {
        used = 0;
      }
    }
    KILN_CHECK(used > 0 && std::isfinite(value) && value >= 0, what, ": '", text,
               "' is not a duration (seconds, or like 45m, 1h30m, 90s)");
    at += used;
    double unit = 1;
    if (at < text.size()) {
      char c = text[at++];
      KILN_CHECK(c == 'h' || c == 'm' || c == 's', what, ": '", text, "': unknown unit '", c,
                 "' (h, m or s)");
      unit = c == 'h' ? 3600 : c == 'm' ? 60 : 1;
      bare = false;
    } else {
      KILN_CHECK(bare, what, ": '", text, "': a unit (h, m or s) is missing at the end");
    }
    seconds += value * unit;
  }
  KILN_CHECK(!text.empty(), what, ": an empty duration");
  return seconds;
}

ProgressLine::ProgressLine(bool enabled, int64_t first_epoch, int64_t last_epoch,
                           double done_before)
    : enabled_(enabled),
      first_epoch_(first_epoch),
      last_epoch_(last_epoch),
      done_before_(done_before) {}

std::string ProgressLine::text(int64_t epoch, size_t batch, size_t batches, int64_t step,
                               double loss, double tokens_per_second, double grad_norm,
                               double lr) const {
  // Epochs done by this process, fractional, and what is left.
  double done = (epoch - first_epoch_) + double(batch) / batches - done_before_;
  double left = last_epoch_ - first_epoch_ + 1 - done_before_ - done;
  double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  double eta = done > 0 ? elapsed / done * left : 0;
  char line[256];
  std::snprintf(line, sizeof line,
                "epoch %ld/%ld batch %zu/%zu step %ld loss %.4f tok/s %.0f gnorm %.3f lr %.2e "
                "eta %s",
                static_cast<long>(epoch), static_cast<long>(last_epoch_), batch, batches,
                static_cast<long>(step), loss, tokens_per_second, grad_norm, lr,
                format_duration(eta).c_str());
  return line;
}

void ProgressLine::show(int64_t epoch, size_t batch, size_t batches, int64_t step, double loss,
                        double tokens_per_second, double grad_norm, double lr) const {
  if (!enabled_) return;
  // Back to the line's start, then clear what is left of it.
  std::printf("\r%s\033[K",
              text(epoch, batch, batches, step, loss, tokens_per_second, grad_norm, lr).c_str());
  std::fflush(stdout);
}

void ProgressLine::finish_epoch() const {
  if (enabled_) std::printf("\n");
}

void ProgressLine::clear() const {
  if (!enabled_) return;
  std::printf("\r\033[K");
  std::fflush(stdout);
}

std::string epoch_line(const EpochMetrics& m, bool has_validation) {
  // A diverged run's NaN prints as "nan": printf shows the sign bit of a negative one as "-nan".
  auto loss = [](double x) { return std::isnan(x) ? std::fabs(x) : x; };
  char line[256];
  if (!has_validation) {
    std::snprintf(line, sizeof line,
                  "epoch %ld: train loss %.4f, no validation split, %.0f tok/s, %.1f s",
                  static_cast<long>(m.epoch), loss(m.train_loss), m.tokens_per_second, m.seconds);
  } else {
    std::snprintf(
        line, sizeof line,
        "epoch %ld: train loss %.4f, valid loss %.4f, valid BLEU %.2f, exact %.1f%%, %.1f s",
        static_cast<long>(m.epoch), loss(m.train_loss), loss(m.valid_loss), m.valid_bleu,
        100 * m.valid_exact, m.seconds);
  }
  return line;
}

void append_metrics_line(const std::string& path, const EpochMetrics& m) {
  nlohmann::json j = {{"epoch", m.epoch}, {"steps", m.steps}, {"train_loss", m.train_loss}};
  if (m.validated) {
    j["valid_loss"] = m.valid_loss;
    j["valid_bleu"] = m.valid_bleu;
    j["valid_exact"] = m.valid_exact;
  }
  j.update({{"seconds", m.seconds},
            {"tokens_per_second", m.tokens_per_second},
            {"lr", m.lr},
            {"grad_norm", m.grad_norm}});
  if (m.early_stop) j["early_stop"] = true;
  durable_write(path, existing_text(path) + j.dump() + "\n", "metrics");
}

namespace {

// One line of metrics.jsonl; `where` ("path:line") names it in errors.
EpochMetrics parse_metrics_line(std::string_view line, const std::string& where) {
  EpochMetrics m;
  try {
    nlohmann::json j = nlohmann::json::parse(line);
    m.epoch = j.at("epoch").get<int64_t>();
    m.steps = j.at("steps").get<int64_t>();
    // A diverged loss is written as null.
    auto number = [&](const char* name) {
      return j.contains(name) && j[name].is_number() ? j[name].get<double>() : 0.0;
    };
    m.train_loss = number("train_loss");
    // Only a line with a validation has valid_ fields (before that rule, every line had them).
    m.validated = j.contains("valid_loss");
    m.valid_loss = number("valid_loss");
    m.valid_bleu = number("valid_bleu");
    m.valid_exact = number("valid_exact");
    m.seconds = number("seconds");
    m.tokens_per_second = number("tokens_per_second");
    m.lr = number("lr");
    m.grad_norm = number("grad_norm");
    m.early_stop = j.value("early_stop", false);
  } catch (const nlohmann::json::exception& e) {
    KILN_FAIL(where, ": not a metrics line with integers \"epoch\" and \"steps\" (", e.what(),
              "); fix or remove the file to resume");
  }
  return m;
}

}  // namespace

std::vector<EpochMetrics> read_metrics(const std::string& path) {
  std::vector<EpochMetrics> lines;
  const std::string text = existing_text(path);  // the lines point into it
  int64_t line_number = 0;
  for (std::string_view line : data::split_lines(text)) {
    ++line_number;
    lines.push_back(parse_metrics_line(line, path + ":" + std::to_string(line_number)));
  }
  return lines;
}

void truncate_metrics(const std::string& path, int64_t last_step) {
  std::string text = existing_text(path), kept;
  if (text.empty()) return;
  int64_t line_number = 0;
  for (std::string_view line : data::split_lines(text)) {
    ++line_number;
    EpochMetrics m = parse_metrics_line(line, path + ":" + std::to_string(line_number));
    if (m.steps <= last_step) kept.append(line).append("\n");
  }
  if (kept != text) durable_write(path, kept, "metrics");
}

namespace {

// About `count` round tick values covering [0, max]: steps of 1, 2 or 5 times a power of ten.
double tick_step(double max, int count) {
  double raw = max / count, power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * power >= raw) return m * power;
  }
  return 10 * power;
}

}  // namespace

void write_loss_svg(const std::string& path, const std::vector<EpochMetrics>& history) {
  if (history.empty()) return;
  const double width = 640, height = 360, left = 60, right = 20, top = 20, bottom = 50;
  double max_loss = 0, max_step = 1;
  bool any_valid = false;
  for (const EpochMetrics& m : history) {
    max_loss = std::max({max_loss, m.train_loss, m.validated ? m.valid_loss : 0.0});
    max_step = std::max(max_step, static_cast<double>(m.steps));
    any_valid = any_valid || m.validated;
  }
  if (!(max_loss > 0) || !std::isfinite(max_loss)) max_loss = 1;
  double y_tick = tick_step(max_loss, 5), x_tick = tick_step(max_step, 6);
  max_loss = std::ceil(max_loss / y_tick) * y_tick;  // the axis ends on a tick
  max_step = std::ceil(max_step / x_tick) * x_tick;
  auto x = [&](double step) { return left + step / max_step * (width - left - right); };
  auto y = [&](double loss) { return top + (1 - loss / max_loss) * (height - top - bottom); };
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<line x1=\"" << left << "\" y1=\"" << height - bottom << "\" x2=\"" << width - right
      << "\" y2=\"" << height - bottom << "\" stroke=\"black\"/>\n<line x1=\"" << left << "\" y1=\""
      << top << "\" x2=\"" << left << "\" y2=\"" << height - bottom << "\" stroke=\"black\"/>\n";
  // Ticks with their values; the small epsilon keeps the last tick despite rounding.
  for (int k = 0; k * x_tick <= max_step * (1 + 1e-9); ++k) {
    double v = k * x_tick;
    svg << "<line x1=\"" << x(v) << "\" y1=\"" << height - bottom << "\" x2=\"" << x(v)
        << "\" y2=\"" << height - bottom + 5 << "\" stroke=\"black\"/>\n<text x=\"" << x(v)
        << "\" y=\"" << height - bottom + 18 << "\" text-anchor=\"middle\">" << v << "</text>\n";
  }
  for (int k = 0; k * y_tick <= max_loss * (1 + 1e-9); ++k) {
    double v = k * y_tick;
    svg << "<line x1=\"" << left - 5 << "\" y1=\"" << y(v) << "\" x2=\"" << left << "\" y2=\""
        << y(v) << "\" stroke=\"black\"/>\n<text x=\"" << left - 8 << "\" y=\"" << y(v) + 4
        << "\" text-anchor=\"end\">" << v << "</text>\n";
  }
  svg << "<text x=\"" << (left + width - right) / 2 << "\" y=\"" << height - 12
      << "\" text-anchor=\"middle\">step</text>\n"
      << "<text transform=\"translate(14," << (top + height - bottom) / 2
      << ") rotate(-90)\" text-anchor=\"middle\">loss / token</text>\n";
  auto line = [&](auto value, bool valid, const char* color, const char* label, double label_y) {
    svg << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\" points=\"";
    for (const EpochMetrics& m : history) {
      if (!valid || m.validated)
        svg << x(static_cast<double>(m.steps)) << "," << y(value(m)) << " ";
    }
    svg << "\"/>\n<text x=\"" << width - right - 120 << "\" y=\"" << label_y << "\" fill=\""
        << color << "\">" << label << "</text>\n";
  };
  line([](const EpochMetrics& m) { return m.train_loss; }, false, "#1f77b4", "train (epoch mean)",
       top + 14);
  if (any_valid) {
    line([](const EpochMetrics& m) { return m.valid_loss; }, true, "#d62728", "valid", top + 30);
  }
  svg << "</svg>\n";
  durable_write(path, svg.str(), "write_loss_svg");
}

}  // namespace kiln::seq2seq
