// Progress and epoch lines, metrics.jsonl and loss.svg (see report.h).
#include "models/seq2seq/report.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/durable_file.h"
#include "core/error.h"
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

std::string model_line(const ModelConfig& c, int64_t num_parameters, const Device& device) {
  return "model: " + std::string(cell_name(c.cell)) + " " + std::to_string(c.num_layers) + "x" +
         std::to_string(c.hidden_size) + ", embed " + std::to_string(c.embed_size) +
         ", attention " + attention_name(c.attention) + ", " + std::to_string(num_parameters) +
         " parameters, on " + device.str();
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

ProgressLine::ProgressLine(bool enabled, int64_t first_epoch, int64_t last_epoch)
    : enabled_(enabled), first_epoch_(first_epoch), last_epoch_(last_epoch) {}

void ProgressLine::show(int64_t epoch, size_t step, size_t steps, double loss,
                        double tokens_per_second, double grad_norm, double lr) const {
  if (!enabled_) return;
  double done = (epoch - first_epoch_) + double(step) / steps;  // epochs done, fractional
  double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  double eta = elapsed / done * (last_epoch_ - first_epoch_ + 1 - done);
  char line[256];
  std::snprintf(line, sizeof line,
                "epoch %ld/%ld step %zu/%zu loss %.4f tok/s %.0f gnorm %.3f lr %.2e eta %s",
                static_cast<long>(epoch), static_cast<long>(last_epoch_), step, steps, loss,
                tokens_per_second, grad_norm, lr, format_duration(eta).c_str());
  std::printf("\r%s\033[K", line);  // back to the line's start, then clear what is left of it
  std::fflush(stdout);
}

void ProgressLine::finish_epoch() const {
  if (enabled_) std::printf("\n");
}

std::string epoch_line(const EpochMetrics& m, bool has_validation) {
  char line[256];
  if (!has_validation) {
    std::snprintf(line, sizeof line,
                  "epoch %ld: train loss %.4f, no validation split, %.0f tok/s, %.1f s",
                  static_cast<long>(m.epoch), m.train_loss, m.tokens_per_second, m.seconds);
  } else {
    std::snprintf(
        line, sizeof line,
        "epoch %ld: train loss %.4f, valid loss %.4f, valid BLEU %.2f, exact %.1f%%, %.1f s",
        static_cast<long>(m.epoch), m.train_loss, m.valid_loss, m.valid_bleu, 100 * m.valid_exact,
        m.seconds);
  }
  return line;
}

void append_metrics_line(const std::string& path, const EpochMetrics& m) {
  nlohmann::json j = {{"epoch", m.epoch},
                      {"steps", m.steps},
                      {"train_loss", m.train_loss},
                      {"valid_loss", m.valid_loss},
                      {"valid_bleu", m.valid_bleu},
                      {"valid_exact", m.valid_exact},
                      {"seconds", m.seconds},
                      {"tokens_per_second", m.tokens_per_second},
                      {"lr", m.lr},
                      {"grad_norm", m.grad_norm}};
  durable_write(path, existing_text(path) + j.dump() + "\n", "metrics");
}

void truncate_metrics(const std::string& path, int64_t last_epoch) {
  std::string text = existing_text(path), kept;
  if (text.empty()) return;
  int64_t line_number = 0;
  for (std::string_view line : data::split_lines(text)) {
    ++line_number;
    int64_t epoch = 0;
    try {
      nlohmann::json j = nlohmann::json::parse(line);
      epoch = j.at("epoch").get<int64_t>();
    } catch (const nlohmann::json::exception& e) {
      KILN_FAIL(path, ":", line_number, ": not a metrics line with an integer \"epoch\" (",
                e.what(), "); fix or remove the file to resume");
    }
    if (epoch <= last_epoch) kept.append(line).append("\n");
  }
  if (kept != text) durable_write(path, kept, "metrics");
}

void write_loss_svg(const std::string& path, const std::vector<EpochMetrics>& history) {
  if (history.empty()) return;
  const double width = 640, height = 360, left = 60, right = 20, top = 20, bottom = 50;
  double max_loss = 0;
  for (const EpochMetrics& m : history) max_loss = std::max({max_loss, m.train_loss, m.valid_loss});
  if (max_loss <= 0) max_loss = 1;
  double last_epoch = static_cast<double>(history.back().epoch),
         first_epoch = static_cast<double>(history.front().epoch);
  auto x = [&](double epoch) {
    double t = last_epoch > first_epoch ? (epoch - first_epoch) / (last_epoch - first_epoch) : 0.5;
    return left + t * (width - left - right);
  };
  auto y = [&](double loss) { return top + (1 - loss / max_loss) * (height - top - bottom); };
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<line x1=\"" << left << "\" y1=\"" << height - bottom << "\" x2=\"" << width - right
      << "\" y2=\"" << height - bottom << "\" stroke=\"black\"/>\n<line x1=\"" << left << "\" y1=\""
      << top << "\" x2=\"" << left << "\" y2=\"" << height - bottom << "\" stroke=\"black\"/>\n";
  svg << "<text x=\"" << width / 2 << "\" y=\"" << height - 15
      << "\" text-anchor=\"middle\">epoch</text>\n"
      << "<text x=\"" << left - 8 << "\" y=\"" << top + 4 << "\" text-anchor=\"end\">" << max_loss
      << "</text>\n"
      << "<text x=\"" << left - 8 << "\" y=\"" << height - bottom
      << "\" text-anchor=\"end\">0</text>\n"
      << "<text x=\"" << left << "\" y=\"" << height - bottom + 16 << "\">" << first_epoch
      << "</text>\n"
      << "<text x=\"" << width - right << "\" y=\"" << height - bottom + 16
      << "\" text-anchor=\"end\">" << last_epoch << "</text>\n";
  auto line = [&](auto value, const char* color, const char* label, double label_y) {
    svg << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\" points=\"";
    for (const EpochMetrics& m : history) {
      svg << x(static_cast<double>(m.epoch)) << "," << y(value(m)) << " ";
    }
    svg << "\"/>\n<text x=\"" << width - right - 120 << "\" y=\"" << label_y << "\" fill=\""
        << color << "\">" << label << "</text>\n";
  };
  line([](const EpochMetrics& m) { return m.train_loss; }, "#1f77b4", "train loss / token",
       top + 14);
  line([](const EpochMetrics& m) { return m.valid_loss; }, "#d62728", "valid loss / token",
       top + 30);
  svg << "</svg>\n";
  durable_write(path, svg.str(), "write_loss_svg");
}

}  // namespace kiln::seq2seq
