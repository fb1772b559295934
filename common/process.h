// Process: a child program run by a launcher (bertctl pretrain starts
// bert-coordinator and mpirun with it). POSIX, Linux; no LibTorch.
//
// Contract.
//  - Start() forks and execs argv in a new process group whose id is the
//    child's pid, so Signal() reaches the child and everything it started in
//    that group, and a Ctrl-C at the terminal reaches only the launcher, which
//    decides what to forward. stdin is /dev/null: a background process group
//    that read the terminal would be stopped by SIGTTIN.
//  - The environment is the launcher's plus `env` (which overrides).
//  - Output: with no log_path the child inherits stdout and stderr. With
//    log_path, both are appended to that file (created 0644). With echo_fd
//    >= 0 as well, Poll() and Wait() copy what the child appended since to
//    echo_fd (like `tail -f`), so call them often. The child writes to the
//    file itself, never to a pipe the launcher reads, so it does not depend
//    on the launcher staying alive (no SIGPIPE when the launcher dies).
//  - No threads. Linux sends a child its parent-death signal (see
//    stop_with_parent) each time the parent *thread* it hangs off exits, so
//    a dying launcher with two threads can signal a child twice; mpirun
//    takes a second SIGTERM as "abort now" and exits leaving its ranks
//    running. Launchers using stop_with_parent should stay single-threaded.
//  - A program that cannot be executed (not found, not executable) is an
//    error from Start(), not a child exiting 127.
//  - Exit codes are the child's exit status, or 128 + N when signal N ended it
//    (the shell's convention).
//  - The destructor kills (Kill()) a child that is still running and reaps
//    it, so an early return in the launcher leaves no strays.
//
// Thread safety: thread-compatible (one thread uses a Process).
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace bert {

struct ProcessOptions {
  std::vector<std::string> argv;  // argv[0]: a path, or a name looked up on PATH
  std::vector<std::pair<std::string, std::string>> env;  // added to the inherited environment
  std::string log_path;           // "" = inherit stdout/stderr; else append both here
  int echo_fd = -1;               // with log_path: also copy the output to this fd (e.g. 2)
  // SIGTERM to the child when the launcher dies, even by SIGKILL
  // (PR_SET_PDEATHSIG). Linux ties this to the *thread* that called Start()
  // (see "No threads" above).
  bool stop_with_parent = false;
};

class Process {
 public:
  // Starts the program. Fails with NotFound (no such program on PATH),
  // IoError (the log file cannot be opened) or Internal (fork/exec failed),
  // the message naming the program or file.
  static Result<std::unique_ptr<Process>> Start(const ProcessOptions& options);

  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }  // also the process group id

  // The exit code if the child has exited (reaping it), else nullopt.
  // Never blocks.
  std::optional<int> Poll();
  // Waits up to timeout_ms (< 0: without limit) for the child to exit.
  std::optional<int> Wait(int timeout_ms);
  // The exit code once Poll() or Wait() has seen the exit.
  std::optional<int> exit_code() const { return exit_code_; }
  bool running() { return !Poll().has_value(); }

  // Sends `signal` to the child's process group. Also allowed after the
  // child exited: members of its group may live on. False when no process
  // of the group was there to receive it.
  bool Signal(int signal);
  // SIGKILL to the process group and to every descendant found under /proc
  // (programs such as mpirun put their children in groups of their own),
  // then reaps the child. Idempotent.
  void Kill();

 private:
  Process() = default;
  void PumpEcho();    // copies what the child appended to the log since
  void FinishEcho();  // the last copy; closes the log

  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  int follow_fd_ = -1;  // the log file, read from where the child started
  int echo_fd_ = -1;
};

// The path of the executable `name` would run: `name` itself when it
// contains a '/', else the first executable PATH entry. nullopt if none.
std::optional<std::string> FindExecutable(const std::string& name);

// Every process whose parent chain leads to `root` (not `root` itself), read
// from /proc. A snapshot: processes may come and go meanwhile.
std::vector<pid_t> DescendantPids(pid_t root);

// Makes this process the reaper of its orphaned descendants
// (PR_SET_CHILD_SUBREAPER): a rank whose mpirun exited first is re-parented
// here rather than to init, so ReapChildren() can wait for it.
Status BecomeSubreaper();

// Waits up to grace_ms for every descendant of this process to exit,
// reaping its children (adopted orphans included), then SIGKILLs and reaps
// whatever is left. Returns how many were killed. For the end of a
// launcher: it also reaps children that Process objects still own.
int ReapChildren(int grace_ms);

}  // namespace bert
