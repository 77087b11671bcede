#include "models/seq2seq/attention_svg.h"

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
    else
      out += c;
  }
  return out;
}
}  // namespace

void write_attention_svg(const std::string& path, const std::vector<std::string>& source_tokens,
                         const std::vector<std::string>& target_tokens,
                         const std::vector<std::vector<float>>& attention) {
  const int cell = 28, left = 110, top = 90;
  size_t rows = attention.size(), cols = rows ? attention[0].size() : 0;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << left + cols * cell + 20
      << "\" height=\"" << top + rows * cell + 20
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
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
      int shade = 255 - static_cast<int>(255 * std::min(1.0f, std::max(0.0f, attention[i][j])));
      svg << "<rect x=\"" << left + j * cell << "\" y=\"" << top + i * cell << "\" width=\"" << cell
          << "\" height=\"" << cell << "\" fill=\"rgb(" << shade << "," << shade
          << ",255)\"><title>" << attention[i][j] << "</title></rect>\n";
    }
  }
  svg << "</svg>\n";
  durable_write(path, svg.str(), "write_attention_svg");
}

}  // namespace kiln::seq2seq
