#include "worker/train/runtime_setup.h"

#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <string>

#include <glog/logging.h>

namespace bert {

std::string BlasCoreName() {
  using CoreNameFn = char* (*)();
  auto core_name = reinterpret_cast<CoreNameFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (core_name == nullptr) return "";
  const char* name = core_name();
  return name == nullptr ? "" : name;
}

std::string RecommendedBlasCoreType() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return "";
  const std::string core = BlasCoreName();
  // OpenBLAS's fallbacks when it does not recognise the CPU model.
  if (core != "Prescott" && core != "Core2" && core != "Nehalem" && core != "Penryn" && core != "Atom") return "";
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return "";
}

// Ranks the launcher started on this node; nullptr when not launched by
// mpirun or srun. mpirun says it in OMPI_COMM_WORLD_LOCAL_SIZE; srun
// --mpi=pmix sets no OMPI_* variable before MPI_Init, but its step's tasks
// per node ("2", "2(x3)", "4,2": the first node's count is taken).
const char* LauncherLocalRanks() {
  if (const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE")) return local;
  return std::getenv("SLURM_STEP_TASKS_PER_NODE");
}

int BlasThreadsForThisRank() {
  cpu_set_t set;
  CPU_ZERO(&set);
  const int cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
  int local_ranks = 1;
  if (const char* local = LauncherLocalRanks()) local_ranks = std::max(1, std::atoi(local));
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  // A launcher that bound this rank to its own CPUs already divided them.
  if (online > 0 && cpus < online) local_ranks = 1;
  return std::max(1, cpus / local_ranks);
}

void ReexecWithTunedEnvironment(char** argv) {
  bool changed = false;
  if (std::getenv("OPENBLAS_NUM_THREADS") == nullptr && LauncherLocalRanks() != nullptr) {
    setenv("OPENBLAS_NUM_THREADS", std::to_string(BlasThreadsForThisRank()).c_str(), /*overwrite=*/1);
    changed = true;
  }
  const std::string core_type = RecommendedBlasCoreType();
  if (!core_type.empty()) {
    setenv("OPENBLAS_CORETYPE", core_type.c_str(), /*overwrite=*/1);
    changed = true;
  }
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/1);
    changed = true;
  }
  if (!changed) return;
  // Through the binary's own path, not /proc/self/exe, so that the process
  // keeps its name (ps, pgrep, mpirun's reports).
  char path[PATH_MAX] = {0};
  const ssize_t length = readlink("/proc/self/exe", path, sizeof(path) - 1);
  execv(length > 0 ? path : "/proc/self/exe", argv);
  LOG(WARNING) << "[worker] re-executing with tuned settings failed (" << std::strerror(errno)
               << "); set OMP_WAIT_POLICY=PASSIVE"
               << (core_type.empty() ? std::string() : " and OPENBLAS_CORETYPE=" + core_type + " (OpenBLAS uses its generic " +
                                                          BlasCoreName() + " kernels: ~6x slower GEMMs)");
}

void KeepLargeAllocationsOnHeap() {
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);  // the top of the heap is returned only past 2 GiB free
}

}  // namespace bert
