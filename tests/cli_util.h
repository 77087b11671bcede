// Helpers for the tests that train small models and run the kiln binary: a fresh temporary
// folder per test and process, a file's bytes, the options of a tiny model, and the binary's
// exit code with its output captured to a file.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "models/seq2seq/options.h"

namespace kiln::testing {

// A fresh, empty folder for `name` (which names the suite) and this process, on tmpfs where there
// is one: the run-folder tests fsync at every durable step, which a real disk makes slow (~5 ms
// each, some 200 per killed-and-resumed run), and a kill -9 leaves the page cache alone, so those
// tests check the order of the steps, which any file system shows. An old folder of the same name
// is removed first; the folder is created, as most callers write files into it at once, and an
// empty folder is a valid --out for train.
inline std::filesystem::path temp_dir(const std::string& name) {
  std::filesystem::path root = ::access("/dev/shm", W_OK) == 0
                                   ? std::filesystem::path("/dev/shm")
                                   : std::filesystem::temp_directory_path();
  std::filesystem::path dir = root / ("kiln_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// The bytes of `file`, or "" when it cannot be opened.
inline std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A tiny model on the generated reverse task, for the tests that train one; a suite that needs
// another size or length of training changes those fields of the result.
inline seq2seq::TrainOptions tiny_reverse_options() {
  seq2seq::TrainOptions o;
  o.task = "reverse";
  o.task_size = 300;
  o.valid_pairs = 20;
  o.test_pairs = 0;
  o.epochs = 3;
  o.batch_size = 32;
  o.model.embed_size = 8;
  o.model.hidden_size = 16;
  o.model.num_layers = 2;
  o.model.dropout = 0.1;  // dropout draws random numbers: resume must restore the generator
  o.model.attention = seq2seq::Attention::bahdanau;
  o.bleu_sentences = 10;
  o.quiet = true;
  return o;
}

// Runs the kiln binary built beside the tests, or $KILN_CLI (a prebuilt bundle run elsewhere),
// with stdout and stderr into `output_file`. Returns its exit code, -1 when it did not exit (a
// signal: an abort shows up here, not as exit code 134).
inline int run_kiln(const std::string& args, const std::string& output_file) {
  const char* override_path = std::getenv("KILN_CLI");
  std::string binary = override_path ? override_path : KILN_CLI_PATH;
  std::string command = binary + " " + args + " > " + output_file + " 2>&1";
  int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace kiln::testing
