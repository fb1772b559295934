// common/process.h: exit codes, signals to the process group, descendants
// killed, output appended to a log (and echoed), environment additions,
// timeouts, a program that cannot run reported by Start(), children that
// stop with their launcher, and orphans adopted and reaped (subreaper).
#include "common/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/file_util.h"
#include "test_util.h"

namespace bert {
namespace {

using testing::TempDir;
using testing::WriteText;
using Clock = std::chrono::steady_clock;

std::unique_ptr<Process> StartOk(ProcessOptions options) {
  Result<std::unique_ptr<Process>> process = Process::Start(options);
  EXPECT_TRUE(process.ok()) << process.status().message();
  return process.ok() ? std::move(process).value() : nullptr;
}

std::unique_ptr<Process> Shell(const std::string& script, const std::string& log_path = "") {
  ProcessOptions options;
  options.argv = {"/bin/sh", "-c", script};
  options.log_path = log_path;
  return StartOk(options);
}

// Alive: exists and is not a zombie (a killed orphan may linger as one).
bool IsAlive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z' && line[close + 2] != 'X';
}

// Polls for a file with a pid written by a child script.
pid_t ReadPidFile(const std::string& path) {
  for (int i = 0; i < 500; ++i) {
    Result<std::string> text = ReadFile(path);
    if (text.ok() && !text->empty() && text->back() == '\n') return std::stoi(*text);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

bool WaitGone(pid_t pid, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    if (!IsAlive(pid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return !IsAlive(pid);
}

TEST(ProcessTest, ReportsExitCodes) {
  for (int code : {0, 1, 7, 255}) {
    auto process = Shell("exit " + std::to_string(code));
    ASSERT_NE(process, nullptr);
    EXPECT_EQ(process->Wait(5000), code);
    EXPECT_EQ(process->exit_code(), code);
    EXPECT_EQ(process->Poll(), code);  // stays reported after reaping
  }
}

TEST(ProcessTest, SignalledExitIs128PlusSignal) {
  auto process = Shell("kill -KILL $$");
  ASSERT_NE(process, nullptr);
  EXPECT_EQ(process->Wait(5000), 128 + SIGKILL);
}

TEST(ProcessTest, RunsInItsOwnProcessGroup) {
  auto process = Shell("sleep 30");
  ASSERT_NE(process, nullptr);
  EXPECT_EQ(::getpgid(process->pid()), process->pid());
  EXPECT_NE(::getpgid(process->pid()), ::getpgrp());
}

TEST(ProcessTest, PollDoesNotBlockAndWaitTimesOut) {
  auto process = Shell("sleep 30");
  ASSERT_NE(process, nullptr);
  const auto start = Clock::now();
  EXPECT_FALSE(process->Poll().has_value());
  EXPECT_TRUE(process->running());
  EXPECT_FALSE(process->Wait(200).has_value());
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_GE(seconds, 0.19);
  EXPECT_LT(seconds, 3.0);
  process->Kill();
  EXPECT_EQ(process->exit_code(), 128 + SIGKILL);
}

TEST(ProcessTest, SignalReachesTheWholeGroup) {
  TempDir dir;
  // The shell waits for a background child of its group; SIGTERM ends both.
  auto process = Shell("sleep 30 & echo $! > " + (dir / "child.pid") + "; wait");
  ASSERT_NE(process, nullptr);
  const pid_t child = ReadPidFile(dir / "child.pid");
  ASSERT_GT(child, 0);
  ASSERT_TRUE(IsAlive(child));
  EXPECT_TRUE(process->Signal(SIGTERM));
  EXPECT_EQ(process->Wait(5000), 128 + SIGTERM);
  EXPECT_TRUE(WaitGone(child, 5000)) << "the group member " << child << " survived";
}

TEST(ProcessTest, KillReachesDescendantsInOtherGroups) {
  TempDir dir;
  // setsid puts the grandchild in a session (and group) of its own, as
  // mpirun does with its ranks: a signal to our group does not reach it.
  // The grandchild writes its pid itself, after setsid, so the test never
  // sees it while it is still in our group.
  auto process = Shell("setsid sh -c 'echo $$ > " + (dir / "child.pid") +
                       "; exec sleep 30' & wait");
  ASSERT_NE(process, nullptr);
  const pid_t child = ReadPidFile(dir / "child.pid");
  ASSERT_GT(child, 0);
  ASSERT_TRUE(IsAlive(child));
  EXPECT_NE(::getpgid(child), process->pid());
  const std::vector<pid_t> descendants = DescendantPids(process->pid());
  EXPECT_NE(std::find(descendants.begin(), descendants.end(), child), descendants.end());
  process->Kill();
  EXPECT_EQ(process->exit_code(), 128 + SIGKILL);
  EXPECT_TRUE(WaitGone(child, 5000)) << "the descendant " << child << " survived Kill()";
}

TEST(ProcessTest, DestructorKillsARunningChild) {
  pid_t pid;
  {
    auto process = Shell("sleep 30");
    ASSERT_NE(process, nullptr);
    pid = process->pid();
    ASSERT_TRUE(IsAlive(pid));
  }
  EXPECT_FALSE(IsAlive(pid));
}

TEST(ProcessTest, StopWithParentEndsTheChildWhenTheLauncherDies) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t launcher = ::fork();  // this test is single-threaded: the child may allocate
  ASSERT_GE(launcher, 0);
  if (launcher == 0) {
    ProcessOptions options;
    options.argv = {"sleep", "30"};
    options.stop_with_parent = true;
    Result<std::unique_ptr<Process>> process = Process::Start(options);
    const pid_t pid = process.ok() ? (*process)->pid() : -1;
    ssize_t ignored = ::write(fds[1], &pid, sizeof(pid));
    (void)ignored;
    ::_exit(0);  // dies without running the Process destructor
  }
  ::close(fds[1]);
  pid_t child = -1;
  ASSERT_EQ(::read(fds[0], &child, sizeof(child)), static_cast<ssize_t>(sizeof(child)));
  ::close(fds[0]);
  ::waitpid(launcher, nullptr, 0);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(WaitGone(child, 5000)) << "the child " << child << " outlived its launcher";
}

// As a subreaper, a launcher adopts what its children leave behind (a rank
// outliving mpirun) and ReapChildren() waits for it, or kills it after the
// grace period. Runs in a forked helper, which becomes the subreaper.
int ReapInHelper(const std::string& script, int grace_ms, const std::string& pid_file) {
  const pid_t helper = ::fork();
  if (helper < 0) return -1;
  if (helper == 0) {  // this test is single-threaded: the helper may allocate
    if (!BecomeSubreaper().ok()) ::_exit(100);
    Result<std::unique_ptr<Process>> process = Process::Start(ProcessOptions{{"/bin/sh", "-c", script}, {}, "", -1});
    if (!process.ok() || (*process)->Wait(5000) != 0) ::_exit(101);  // the shell exits at once
    if (ReadPidFile(pid_file) <= 0) ::_exit(102);
    ::_exit(ReapChildren(grace_ms));  // how many it killed
  }
  int status = 0;
  ::waitpid(helper, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(ProcessTest, ReapChildrenWaitsForAdoptedOrphans) {
  TempDir dir;
  const auto start = Clock::now();
  EXPECT_EQ(ReapInHelper("sleep 0.5 & echo $! > " + (dir / "orphan.pid"), 10000, dir / "orphan.pid"), 0);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_GE(seconds, 0.45) << "returned before the orphan exited";
  EXPECT_LT(seconds, 5.0);
}

TEST(ProcessTest, ReapChildrenKillsOrphansAfterTheGrace) {
  TempDir dir;
  const auto start = Clock::now();
  EXPECT_EQ(ReapInHelper("sleep 30 & echo $! > " + (dir / "orphan.pid"), 300, dir / "orphan.pid"), 1);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 5.0);
  const pid_t orphan = ReadPidFile(dir / "orphan.pid");
  EXPECT_TRUE(WaitGone(orphan, 2000)) << "the orphan " << orphan << " survived";
}

TEST(ProcessTest, AppendsStdoutAndStderrToTheLog) {
  TempDir dir;
  const std::string log = dir / "out.log";
  WriteText(log, "earlier session\n");
  auto process = Shell("echo to-stdout; echo to-stderr >&2; exit 3", log);
  ASSERT_NE(process, nullptr);
  EXPECT_EQ(process->Wait(5000), 3);
  Result<std::string> text = ReadFile(log);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "earlier session\nto-stdout\nto-stderr\n");
}

TEST(ProcessTest, TeesOutputToTheLogAndAnFd) {
  TempDir dir;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ProcessOptions options;
  options.argv = {"/bin/sh", "-c", "for i in 1 2 3; do echo line $i; done; echo err >&2"};
  options.log_path = dir / "tee.log";
  options.echo_fd = fds[1];
  {
    auto process = StartOk(options);
    ASSERT_NE(process, nullptr);
    EXPECT_EQ(process->Wait(5000), 0);
  }  // the tee has finished once the Process is gone
  ::close(fds[1]);
  std::string echoed;
  char buffer[256];
  for (ssize_t n; (n = ::read(fds[0], buffer, sizeof(buffer))) > 0;) echoed.append(buffer, n);
  ::close(fds[0]);
  const std::string expected = "line 1\nline 2\nline 3\nerr\n";
  EXPECT_EQ(echoed, expected);
  Result<std::string> logged = ReadFile(dir / "tee.log");
  ASSERT_TRUE(logged.ok());
  EXPECT_EQ(*logged, expected);
}

// Regression: the echo once went through a pipe that the launcher read, so a
// child writing after the launcher died was killed by SIGPIPE (mpirun then
// died without stopping its ranks). The child writes to its log file itself.
TEST(ProcessTest, AnEchoedChildOutlivesItsLauncher) {
  TempDir dir;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t launcher = ::fork();  // this test is single-threaded: the child may allocate
  ASSERT_GE(launcher, 0);
  if (launcher == 0) {
    ::close(fds[0]);
    ProcessOptions options;
    options.argv = {"/bin/sh", "-c", "echo early; sleep 0.5; echo late; echo done > " + (dir / "marker")};
    options.log_path = dir / "child.log";
    options.echo_fd = fds[1];  // the test closes the read end: writes to it fail
    Result<std::unique_ptr<Process>> process = Process::Start(options);
    ::_exit(process.ok() ? 0 : 1);  // dies without running the Process destructor
  }
  ::close(fds[1]);
  int status = 0;
  ::waitpid(launcher, &status, 0);
  ::close(fds[0]);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  for (int i = 0; i < 500 && !std::filesystem::exists(dir / "marker"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(std::filesystem::exists(dir / "marker")) << "the child died with its launcher";
  EXPECT_EQ(*ReadFile(dir / "child.log"), "early\nlate\n");
}

TEST(ProcessTest, StdinIsDevNull) {
  auto process = Shell("cat > /dev/null");  // would block on an inherited terminal or pipe
  ASSERT_NE(process, nullptr);
  EXPECT_EQ(process->Wait(5000), 0);
}

TEST(ProcessTest, AddsAndOverridesEnvironment) {
  TempDir dir;
  ::setenv("BERT_PROCESS_TEST_KEPT", "kept", 1);
  ::setenv("BERT_PROCESS_TEST_OVERRIDDEN", "old", 1);
  ProcessOptions options;
  options.argv = {"/bin/sh", "-c",
                  "echo $BERT_PROCESS_TEST_KEPT $BERT_PROCESS_TEST_OVERRIDDEN $BERT_PROCESS_TEST_NEW; "
                  "env | grep -c ^BERT_PROCESS_TEST_OVERRIDDEN="};
  options.env = {{"BERT_PROCESS_TEST_OVERRIDDEN", "new"}, {"BERT_PROCESS_TEST_NEW", "added"}};
  options.log_path = dir / "env.log";
  auto process = StartOk(options);
  ASSERT_NE(process, nullptr);
  EXPECT_EQ(process->Wait(5000), 0);
  EXPECT_EQ(*ReadFile(dir / "env.log"), "kept new added\n1\n");
}

TEST(ProcessTest, FindsProgramsOnPath) {
  auto process = StartOk(ProcessOptions{{"true"}, {}, "", -1});
  ASSERT_NE(process, nullptr);
  EXPECT_EQ(process->Wait(5000), 0);
  EXPECT_TRUE(FindExecutable("sh").has_value());
  EXPECT_EQ(FindExecutable("/bin/sh"), "/bin/sh");
}

TEST(ProcessTest, AProgramThatCannotRunIsAStartError) {
  Result<std::unique_ptr<Process>> missing = Process::Start(ProcessOptions{{"bert-no-such-program"}, {}, "", -1});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound);
  EXPECT_NE(missing.status().message().find("bert-no-such-program"), std::string::npos);
  EXPECT_NE(missing.status().message().find("PATH"), std::string::npos);

  TempDir dir;
  WriteText(dir / "not-executable", "#!/bin/sh\n");
  Result<std::unique_ptr<Process>> denied = Process::Start(ProcessOptions{{dir / "not-executable"}, {}, "", -1});
  ASSERT_FALSE(denied.ok());
  EXPECT_NE(denied.status().message().find("not-executable"), std::string::npos);

  // Executable but not a valid program: exec itself fails (ENOEXEC).
  WriteText(dir / "garbage", "\x7f" "ELF garbage");
  ::chmod((dir / "garbage").c_str(), 0755);
  Result<std::unique_ptr<Process>> broken = Process::Start(ProcessOptions{{dir / "garbage"}, {}, "", -1});
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("garbage"), std::string::npos);
}

TEST(ProcessTest, AnUnwritableLogIsAStartError) {
  Result<std::unique_ptr<Process>> process =
      Process::Start(ProcessOptions{{"true"}, {}, "/nonexistent-dir/x.log", -1});
  ASSERT_FALSE(process.ok());
  EXPECT_NE(process.status().message().find("/nonexistent-dir/x.log"), std::string::npos);
}

}  // namespace
}  // namespace bert
