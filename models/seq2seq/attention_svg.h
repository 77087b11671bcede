// An attention heatmap as SVG: rows are target tokens, columns source tokens, darker = more weight,
// with a colour scale (the legend, id="legend") from 0 to 1 beside it; labels are XML-escaped.
#pragma once

#include <string>
#include <vector>

namespace kiln::seq2seq {

// attention[i][j]: weight of source position j when emitting target token i (rows may be longer
// than the source tokens when the source had <eos> appended: extra columns are labelled <eos>).
void write_attention_svg(const std::string& path, const std::vector<std::string>& source_tokens,
                         const std::vector<std::string>& target_tokens,
                         const std::vector<std::vector<float>>& attention);

}  // namespace kiln::seq2seq
