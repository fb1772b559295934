#include "cli/worker_launch.h"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include "common/logging.h"
#include "common/process.h"

namespace bert::cli {
namespace {

namespace fs = std::filesystem;

std::string FirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string value;
  std::getline(in, value);
  return value;
}

std::atomic<int> g_stop_signals{0};
void OnStopSignal(int) { g_stop_signals.fetch_add(1); }

}  // namespace

Result<std::string> LocateBinary(const std::string& name, const char* env_var) {
  const char* from_env = std::getenv(env_var);
  std::string path;
  if (from_env != nullptr && *from_env != '\0') {
    path = from_env;
  } else {
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    path = (ec ? fs::path(".") : self.parent_path()) / name;
  }
  std::optional<std::string> found = FindExecutable(path);
  if (!found) {
    return Status::NotFound(name + ": no executable at " + path +
                            (from_env != nullptr && *from_env != '\0' ? std::string(" ($") + env_var + ")"
                                                                       : std::string(" (build it, or set $") +
                                                                             env_var + ")"));
  }
  return fs::absolute(*found).lexically_normal().string();
}

int UsableCores() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  std::set<std::pair<std::string, std::string>> cores;  // (package, core)
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    const std::string topology = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::string core = FirstLine(topology + "core_id");
    if (core.empty()) core = "cpu" + std::to_string(cpu);
    cores.insert({FirstLine(topology + "physical_package_id"), core});
  }
  return std::max<int>(1, static_cast<int>(cores.size()));
}

std::vector<std::string> MpirunPrefix(const std::string& mpirun, uint32_t workers,
                                      const std::vector<std::string>& extra_args) {
  std::vector<std::string> argv = {mpirun};
  if (::geteuid() == 0) argv.push_back("--allow-run-as-root");  // Open MPI refuses root otherwise
  argv.insert(argv.end(), {"-np", std::to_string(workers), "--bind-to", "none"});
  if (static_cast<int64_t>(workers) > UsableCores()) argv.push_back("--oversubscribe");
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  return argv;
}

int RunToEnd(const std::vector<std::string>& argv, const std::string& log_path, const std::string& tag) {
  struct sigaction action = {}, old_int = {}, old_term = {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, &old_int);
  ::sigaction(SIGTERM, &action, &old_term);
  ProcessOptions options;
  options.argv = argv;
  options.log_path = log_path;
  options.echo_fd = log_path.empty() ? -1 : STDERR_FILENO;
  options.stop_with_parent = true;
  Result<std::unique_ptr<Process>> started = Process::Start(options);
  int code = 1;
  if (!started.ok()) {
    LOG(ERROR) << tag << " " << started.status().message();
  } else {
    Process& child = **started;
    int signals_seen = 0;
    std::optional<int> exit_code;
    while (!(exit_code = child.Wait(100))) {
      const int signals = g_stop_signals.load();
      if (signals > signals_seen) {
        LOG(WARNING) << tag << " interrupted: stopping pid " << child.pid() << (signals > 1 ? " (SIGKILL)" : " (SIGTERM)");
        if (signals > 1) child.Kill(); else child.Signal(SIGTERM);
        signals_seen = signals;
      }
    }
    code = *exit_code;
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return code;
}

}  // namespace bert::cli
