#include "models/seq2seq/attention_svg.h"

#include <algorithm>
#include <sstream>

#include "core/durable_file.h"

namespace kiln::seq2seq {

namespace {
std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else if (c == '"')
      out += "&quot;";
    else if (c == '\'')
      out += "&apos;";
    else
      out += c;
  }
  return out;
}

// The colour of a weight in [0, 1]: white (0) to full blue (1), the same map for cells and legend.
std::string colour(float weight) {
  int shade = 255 - static_cast<int>(255 * std::min(1.0f, std::max(0.0f, weight)));
  return "rgb(" + std::to_string(shade) + "," + std::to_string(shade) + ",255)";
}
}  // namespace

void write_attention_svg(const std::string& path, const std::vector<std::string>& source_tokens,
                         const std::vector<std::string>& target_tokens,
                         const std::vector<std::vector<float>>& attention) {
  const int cell = 28, left = 110, top = 90, legend_width = 90, steps = 10;
  size_t rows = attention.size(), cols = rows ? attention[0].size() : 0;
  // The legend: a bar of `steps` swatches from 0 (bottom) to 1 (top), at least 5 cells high.
  const int bar = std::max<int>(static_cast<int>(rows) * cell, 5 * cell);
  const int legend_x = left + static_cast<int>(cols) * cell + 30;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << legend_x + legend_width
      << "\" height=\"" << top + bar + 20 << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  for (size_t j = 0; j < cols; ++j) {
    std::string label = j < source_tokens.size() ? source_tokens[j] : "<eos>";
    svg << "<text transform=\"translate(" << left + j * cell + cell / 2 << "," << top - 6
        << ") rotate(-60)\">" << escape(label) << "</text>\n";
  }
  for (size_t i = 0; i < rows; ++i) {
    std::string label = i < target_tokens.size() ? target_tokens[i] : "";
    svg << "<text x=\"" << left - 6 << "\" y=\"" << top + i * cell + cell / 2 + 4
        << "\" text-anchor=\"end\">" << escape(label) << "</text>\n";
    for (size_t j = 0; j < cols; ++j) {
      svg << "<rect x=\"" << left + j * cell << "\" y=\"" << top + i * cell << "\" width=\"" << cell
          << "\" height=\"" << cell << "\" fill=\"" << colour(attention[i][j]) << "\"><title>"
          << attention[i][j] << "</title></rect>\n";
    }
  }
  svg << "<g id=\"legend\">\n<text x=\"" << legend_x << "\" y=\"" << top - 12
      << "\">attention weight</text>\n";
  for (int s = 0; s < steps; ++s) {
    float weight = (s + 0.5f) / steps;
    svg << "<rect x=\"" << legend_x << "\" y=\"" << top + bar - (s + 1) * bar / steps
        << "\" width=\"16\" height=\"" << bar / steps + 1 << "\" fill=\"" << colour(weight)
        << "\"/>\n";
  }
  svg << "<rect x=\"" << legend_x << "\" y=\"" << top << "\" width=\"16\" height=\"" << bar
      << "\" fill=\"none\" stroke=\"black\"/>\n";
  for (const char* tick : {"0", "0.25", "0.5", "0.75", "1"}) {
    int y = top + bar - static_cast<int>(std::stod(tick) * bar);
    svg << "<line x1=\"" << legend_x + 16 << "\" y1=\"" << y << "\" x2=\"" << legend_x + 21
        << "\" y2=\"" << y << "\" stroke=\"black\"/><text x=\"" << legend_x + 24 << "\" y=\""
        << y + 4 << "\">" << tick << "</text>\n";
  }
  svg << "</g>\n</svg>\n";
  durable_write(path, svg.str(), "write_attention_svg");
}

}  // namespace kiln::seq2seq
