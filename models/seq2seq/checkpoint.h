// Checkpoint folders (DESIGN.md): model.safetensors (PyTorch names and layouts), config.json,
// source_vocab.txt / target_vocab.txt, optimizer.safetensors and state.json for resume. A folder
// is written whole into `<dir>.tmp`, every file fsynced, then swapped in by renames, so a crash
// leaves either the previous checkpoint or the new one, never a mix or a half-written file.
#pragma once

#include <functional>
#include <string>

namespace kiln::seq2seq {

// Fills a fresh `<dir>.tmp` through `fill(tmp_dir)`, then replaces `dir` with it. If `fill` throws,
// `dir` is untouched and the temporary folder is removed.
void write_directory_atomically(const std::string& dir, const std::function<void(const std::string&)>& fill);

// Writes `text` to `path` through a temporary file, fsync and rename. (Reading: data::read_text_file.)
void write_text_file(const std::string& path, const std::string& text);

}  // namespace kiln::seq2seq
