#include "launch.h"

#include "ranktune/core/error.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <optional>
#include <thread>

namespace ranktune::cli {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<int> g_signal{0};
std::atomic<int> g_signals_received{0};
extern "C" void on_launcher_signal(int signo) {
  g_signal = signo;
  ++g_signals_received;
}

// A port free on loopback now, for rank 0's TCPStore (the kernel picks it; the short window before
// rank 0 binds it is the same torchrun accepts).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  RANKTUNE_CHECK(fd >= 0, "--nproc-per-node: cannot open a socket: ", std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(fd);
  RANKTUNE_CHECK(ok, "--nproc-per-node: cannot find a free port on 127.0.0.1: ", std::strerror(errno));
  return ntohs(address.sin_port);
}

std::string self_executable() {
  char path[4096];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  RANKTUNE_CHECK(n > 0, "--nproc-per-node: cannot find this program (/proc/self/exe): ", std::strerror(errno));
  return std::string(path, static_cast<size_t>(n));
}

std::string describe(int status) {
  if (WIFSIGNALED(status)) {
    const int s = WTERMSIG(status);
    return "was killed by signal " + std::to_string(s) + " (" + strsignal(s) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

struct Worker {
  pid_t pid = -1;
  bool running = false;
  int status = 0;
};

pid_t spawn(const std::string& exe, const std::vector<std::string>& arguments, int rank, int nproc, int port) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  RANKTUNE_CHECK(pid >= 0, "--nproc-per-node: fork failed: ", std::strerror(errno));
  if (pid > 0) return pid;
  // The child: die with the launcher, then become worker `rank`.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);
  const std::string r = std::to_string(rank), n = std::to_string(nproc), p = std::to_string(port);
  ::setenv("RANK", r.c_str(), 1);
  ::setenv("LOCAL_RANK", r.c_str(), 1);
  ::setenv("WORLD_SIZE", n.c_str(), 1);
  ::setenv("LOCAL_WORLD_SIZE", n.c_str(), 1);
  ::setenv("GROUP_RANK", "0", 1);
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", p.c_str(), 1);
  ::unsetenv("TORCHELASTIC_USE_AGENT_STORE");  // this launcher hosts no store: rank 0 does
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(exe.c_str()));
  for (const auto& a : arguments) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(exe.c_str(), argv.data());
  std::cerr << "error: --nproc-per-node: cannot run " << exe << ": " << std::strerror(errno) << std::endl;
  ::_exit(127);
}

}  // namespace

int launch_local_workers(int nproc, const std::vector<std::string>& arguments, double grace_seconds) {
  RANKTUNE_CHECK(nproc >= 1, "--nproc-per-node must be at least 1, got ", nproc);
  const std::string exe = self_executable();
  const int port = free_port();
  std::cerr << "launching " << nproc << " workers (Gloo on 127.0.0.1:" << port << ")" << std::endl;

  g_signal = 0;
  g_signals_received = 0;
  struct sigaction action {};
  action.sa_handler = on_launcher_signal;
  sigemptyset(&action.sa_mask);
  const int forwarded[] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction previous[3];
  for (int i = 0; i < 3; ++i) ::sigaction(forwarded[i], &action, &previous[i]);

  std::vector<Worker> workers(static_cast<size_t>(nproc));
  for (int rank = 0; rank < nproc; ++rank) {
    workers[static_cast<size_t>(rank)].pid = spawn(exe, arguments, rank, nproc, port);
    workers[static_cast<size_t>(rank)].running = true;
  }
  auto signal_running = [&](int signo) {
    for (const auto& w : workers) {
      if (w.running) ::kill(w.pid, signo);
    }
  };

  int result = 0;
  int forwarded_signals = 0;
  std::optional<Clock::time_point> kill_at;  // the survivors of a failure get SIGKILL then
  size_t running = workers.size();
  while (running > 0) {
    if (g_signals_received > forwarded_signals) {
      forwarded_signals = g_signals_received;
      if (forwarded_signals == 1) {
        std::cerr << "launcher: " << strsignal(g_signal) << ": the workers checkpoint and stop (again to kill them)" << std::endl;
        signal_running(g_signal);
        if (result == 0) result = 128 + g_signal;
      } else {
        signal_running(SIGKILL);
      }
    }
    if (kill_at && Clock::now() >= *kill_at) {
      signal_running(SIGKILL);
      kill_at.reset();
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    for (size_t rank = 0; rank < workers.size(); ++rank) {
      Worker& w = workers[rank];
      if (w.pid != pid || !w.running) continue;
      w.running = false;
      w.status = status;
      --running;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      const bool stopped_by_forward = forwarded_signals > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 128 + g_signal;
      if (ok || stopped_by_forward || kill_at || result == 1) break;
      std::cerr << "error: worker " << rank << " (pid " << pid << ") " << describe(status)
                << "; stopping the other workers" << std::endl;
      result = 1;
      signal_running(SIGTERM);
      kill_at = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(grace_seconds * 1000));
      break;
    }
  }
  for (int i = 0; i < 3; ++i) ::sigaction(forwarded[i], &previous[i], nullptr);
  return result;
}

}  // namespace ranktune::cli
