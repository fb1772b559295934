#include "common/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <thread>

extern char** environ;

namespace bert {
namespace {

// A file descriptor closed when it goes out of scope (unless released).
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// The inherited environment with `additions` applied ("KEY=VALUE" strings).
std::vector<std::string> BuildEnvironment(const std::vector<std::pair<std::string, std::string>>& additions) {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string item(*entry);
    bool overridden = false;
    for (const auto& [key, value] : additions) {
      overridden = overridden || item.compare(0, key.size() + 1, key + "=") == 0;
    }
    if (!overridden) env.push_back(item);
  }
  for (const auto& [key, value] : additions) env.push_back(key + "=" + value);
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

// In the child between fork and exec: only async-signal-safe calls.
[[noreturn]] void ExecChild(const char* path, char* const* argv, char* const* envp, int stdin_fd, int out_fd,
                            int error_fd, pid_t parent_pid) {
  ::setpgid(0, 0);
  if (parent_pid > 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent_pid) ::_exit(128 + SIGTERM);  // the parent died before prctl
  }
  // Handlers are reset by exec, but ignored signals and the mask are not.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction default_action;
  std::memset(&default_action, 0, sizeof(default_action));
  default_action.sa_handler = SIG_DFL;
  for (int sig : {SIGINT, SIGTERM, SIGPIPE, SIGHUP, SIGQUIT}) ::sigaction(sig, &default_action, nullptr);
  ::dup2(stdin_fd, 0);
  if (out_fd >= 0) {
    ::dup2(out_fd, 1);
    ::dup2(out_fd, 2);
  }
  ::execve(path, argv, envp);
  const int error = errno;
  ssize_t ignored = ::write(error_fd, &error, sizeof(error));
  (void)ignored;
  ::_exit(127);
}

int DecodeWaitStatus(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

std::optional<std::string> FindExecutable(const std::string& name) {
  if (name.empty()) return std::nullopt;
  if (name.find('/') != std::string::npos) {
    return IsExecutableFile(name) ? std::optional<std::string>(name) : std::nullopt;
  }
  const char* path_env = std::getenv("PATH");
  const std::string path = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
  size_t begin = 0;
  while (begin <= path.size()) {
    size_t end = path.find(':', begin);
    if (end == std::string::npos) end = path.size();
    const std::string dir = end > begin ? path.substr(begin, end - begin) : ".";
    const std::string candidate = dir + "/" + name;
    if (IsExecutableFile(candidate)) return candidate;
    begin = end + 1;
  }
  return std::nullopt;
}

std::vector<pid_t> DescendantPids(pid_t root) {
  std::multimap<pid_t, pid_t> children;  // parent -> child
  if (DIR* proc = ::opendir("/proc")) {
    while (struct dirent* entry = ::readdir(proc)) {
      char* end = nullptr;
      const long pid = std::strtol(entry->d_name, &end, 10);
      if (pid <= 0 || *end != '\0') continue;
      std::ifstream stat_file(std::string("/proc/") + entry->d_name + "/stat");
      std::string stat;
      if (!std::getline(stat_file, stat)) continue;
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
      const size_t close = stat.rfind(')');
      if (close == std::string::npos || close + 4 > stat.size()) continue;
      const long ppid = std::strtol(stat.c_str() + close + 4, nullptr, 10);
      children.emplace(static_cast<pid_t>(ppid), static_cast<pid_t>(pid));
    }
    ::closedir(proc);
  }
  std::vector<pid_t> found;
  std::vector<pid_t> frontier = {root};
  while (!frontier.empty()) {
    const pid_t parent = frontier.back();
    frontier.pop_back();
    auto [first, last] = children.equal_range(parent);
    for (auto it = first; it != last; ++it) {
      found.push_back(it->second);
      frontier.push_back(it->second);
    }
  }
  return found;
}

Status BecomeSubreaper() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return Status::Internal("prctl(PR_SET_CHILD_SUBREAPER): " + std::string(std::strerror(errno)));
  }
  return Status::Ok();
}

int ReapChildren(int grace_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  while (true) {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    const std::vector<pid_t> left = DescendantPids(::getpid());
    if (left.empty()) return 0;
    if (std::chrono::steady_clock::now() >= deadline) {
      for (pid_t pid : left) ::kill(pid, SIGKILL);
      // Their own children are re-parented to us (a subreaper) or to init.
      while (::waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
      }
      return static_cast<int>(left.size());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<std::unique_ptr<Process>> Process::Start(const ProcessOptions& options) {
  if (options.argv.empty()) return Status::InvalidArgument("Process::Start: empty argv");
  const std::string& program = options.argv[0];
  std::optional<std::string> path = FindExecutable(program);
  if (!path) {
    return Status::NotFound("cannot run '" + program + "': " +
                            (program.find('/') != std::string::npos ? "no such executable file"
                                                                    : "not found on PATH"));
  }
  std::vector<std::string> argv_strings = options.argv;
  std::vector<std::string> env_strings = BuildEnvironment(options.env);
  std::vector<char*> argv = CStrings(argv_strings);
  std::vector<char*> envp = CStrings(env_strings);

  Fd stdin_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (stdin_fd.get() < 0) return Status::IoError("cannot open /dev/null: " + std::string(std::strerror(errno)));
  Fd log_fd, follow_fd;
  if (!options.log_path.empty()) {
    log_fd.Reset(::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (log_fd.get() < 0) {
      return Status::IoError("cannot open log file " + options.log_path + ": " + std::strerror(errno));
    }
    if (options.echo_fd >= 0) {
      // Follow the file from its current end: what the child appends.
      follow_fd.Reset(::open(options.log_path.c_str(), O_RDONLY | O_CLOEXEC));
      if (follow_fd.get() < 0 || ::lseek(follow_fd.get(), 0, SEEK_END) < 0) {
        return Status::IoError("cannot read log file " + options.log_path + ": " + std::strerror(errno));
      }
    }
  }
  int error_fds[2];
  if (::pipe2(error_fds, O_CLOEXEC) != 0) return Status::Internal("pipe: " + std::string(std::strerror(errno)));
  Fd error_read(error_fds[0]), error_write(error_fds[1]);

  const int out_fd = log_fd.get();
  const pid_t parent = options.stop_with_parent ? ::getpid() : 0;
  const pid_t pid = ::fork();
  if (pid < 0) return Status::Internal("fork for '" + program + "': " + std::strerror(errno));
  if (pid == 0) {
    ExecChild(path->c_str(), argv.data(), envp.data(), stdin_fd.get(), out_fd, error_write.get(), parent);
  }

  ::setpgid(pid, pid);  // also here, so the group exists before Start() returns (fails harmlessly after exec)
  error_write.Reset();
  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(error_read.get(), &exec_errno, sizeof(exec_errno));
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof(exec_errno))) {
    ::waitpid(pid, nullptr, 0);
    return Status::Internal("cannot run " + *path + ": " + std::strerror(exec_errno));
  }
  std::unique_ptr<Process> process(new Process());  // the constructor is private
  process->pid_ = pid;
  process->follow_fd_ = follow_fd.Release();
  process->echo_fd_ = options.echo_fd;
  return process;
}

void Process::PumpEcho() {
  if (follow_fd_ < 0) return;
  char buffer[16384];
  ssize_t n;
  while ((n = ::read(follow_fd_, buffer, sizeof(buffer))) > 0 || (n < 0 && errno == EINTR)) {
    for (ssize_t done = 0; done < n;) {
      const ssize_t wrote = ::write(echo_fd_, buffer + done, n - done);
      if (wrote < 0 && errno == EINTR) continue;
      if (wrote <= 0) break;  // a closed terminal: the log still has it all
      done += wrote;
    }
  }
}

void Process::FinishEcho() {
  PumpEcho();  // the child is reaped: everything it wrote is in the file
  if (follow_fd_ >= 0) ::close(follow_fd_);
  follow_fd_ = -1;
}

Process::~Process() {
  if (!exit_code_) Kill();
  FinishEcho();
}

std::optional<int> Process::Poll() {
  if (exit_code_ || pid_ <= 0) return exit_code_;
  PumpEcho();
  int status = 0;
  const pid_t done = ::waitpid(pid_, &status, WNOHANG);
  if (done == pid_) {
    exit_code_ = DecodeWaitStatus(status);
    FinishEcho();  // its last lines come before whatever the launcher prints next
  } else if (done < 0 && errno == ECHILD) {
    exit_code_ = -1;  // reaped by someone else: the code is lost
  }
  return exit_code_;
}

std::optional<int> Process::Wait(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!Poll()) {
    if (timeout_ms >= 0 && std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return exit_code_;
}

bool Process::Signal(int signal) { return pid_ > 0 && ::kill(-pid_, signal) == 0; }

void Process::Kill() {
  if (pid_ <= 0) return;
  if (!exit_code_) {
    // Collected first: once the child dies its children are re-parented.
    const std::vector<pid_t> descendants = DescendantPids(pid_);
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);  // in case it left its group
    for (pid_t pid : descendants) ::kill(pid, SIGKILL);
    int status = 0;
    pid_t done;
    do {
      done = ::waitpid(pid_, &status, 0);
    } while (done < 0 && errno == EINTR);
    exit_code_ = done == pid_ ? DecodeWaitStatus(status) : -1;
    FinishEcho();
  } else {
    ::kill(-pid_, SIGKILL);
  }
}

}  // namespace bert
