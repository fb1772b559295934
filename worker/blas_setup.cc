#include "worker/blas_setup.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

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

void ReexecWithFastBlasIfNeeded(char** argv) {
  const std::string core_type = RecommendedBlasCoreType();
  if (core_type.empty()) return;
  setenv("OPENBLAS_CORETYPE", core_type.c_str(), /*overwrite=*/1);
  execv("/proc/self/exe", argv);
  LOG(WARNING) << "[worker] OpenBLAS uses its generic " << BlasCoreName()
               << " kernels on this CPU and re-executing failed (" << std::strerror(errno)
               << "): set OPENBLAS_CORETYPE=" << core_type << " for ~6x faster fp32 GEMMs";
}

}  // namespace bert
