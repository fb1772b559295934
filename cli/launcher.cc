#include "cli/launcher.h"

#include <unistd.h>

namespace bert::cli {

Result<LauncherKind> ParseLauncher(const std::string& name) {
  if (name == "mpirun") return LauncherKind::kMpirun;
  if (name == "srun") return LauncherKind::kSrun;
  return Status::InvalidArgument("--launcher: must be mpirun or srun, got '" + name + "'");
}

const char* LauncherName(LauncherKind kind) { return kind == LauncherKind::kSrun ? "srun" : "mpirun"; }

std::vector<std::string> SrunArgv(const SrunSpec& spec, const std::vector<std::string>& worker_argv) {
  std::vector<std::string> argv = {spec.srun, "--mpi=pmix", "--ntasks=" + std::to_string(spec.workers),
                                   "--kill-on-bad-exit=1"};
  if (!spec.rank_log_pattern.empty()) {
    argv.push_back("--output=" + spec.rank_log_pattern);
    argv.push_back("--open-mode=append");
  }
  argv.insert(argv.end(), spec.extra.begin(), spec.extra.end());
  argv.insert(argv.end(), worker_argv.begin(), worker_argv.end());
  return argv;
}

std::string AdvertisedEndpoint(const std::string& bound, const std::string& host) {
  const std::string scheme = "tcp://";
  if (bound.rfind(scheme, 0) != 0) return "";
  const size_t colon = bound.rfind(':');
  if (colon == std::string::npos || colon < scheme.size()) return "";
  const std::string bound_host = bound.substr(scheme.size(), colon - scheme.size());
  const bool wildcard = bound_host == "0.0.0.0" || bound_host == "*" || bound_host == "[::]" || bound_host == "::";
  return wildcard ? scheme + host + bound.substr(colon) : bound;
}

std::string HostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

std::string ShellQuote(const std::string& word) {
  const bool safe = !word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                            "0123456789_-+=/.,:%@") == std::string::npos;
  if (safe) return word;
  std::string quoted = "'";
  for (char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string ShellJoin(const std::vector<std::string>& words) {
  std::string line;
  for (const std::string& word : words) line += (line.empty() ? "" : " ") + ShellQuote(word);
  return line;
}

}  // namespace bert::cli
