// Helpers for the tests that train small models and run the kiln binary: a fresh temporary
// folder per test and process, and the binary's exit code with its output captured to a file.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace kiln::testing {

// A path under the temporary folder, unique to the test name and this process, removed first.
inline std::filesystem::path temp_dir(const std::string& name) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("kiln_cli_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  return dir;
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
