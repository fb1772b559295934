// OpenBLAS kernel selection.
//
// Debian's LibTorch does its fp32 GEMMs in OpenBLAS (libopenblas0-pthread).
// OpenBLAS built with DYNAMIC_ARCH picks its kernels by CPU model when the
// library loads; 0.3.21 (Debian 12) does not know recent Xeons (e.g. family
// 6 model 0xCF here) and falls back to its generic "Prescott" (SSE3)
// kernels: measured here, a 2048^3 sgemm runs at 24 GFLOP/s per core
// instead of 150 with the AVX-512 ("SkylakeX") kernels. The only switch is
// the OPENBLAS_CORETYPE environment variable, read when the library loads,
// so a program that wants fast GEMMs must have it set before it starts:
// either by its launcher, or by re-executing itself (below).
//
// Thread-safe except ReexecWithFastBlasIfNeeded (call it first in main()).
#pragma once

#include <string>

namespace bert {

// OpenBLAS's kernel name ("Prescott", "SkylakeX", ...), "" when the process
// does not use OpenBLAS.
std::string BlasCoreName();

// The OPENBLAS_CORETYPE this CPU should use ("SkylakeX" with AVX-512F,
// "Haswell" with AVX2 and FMA), or "" when OpenBLAS already uses a
// vectorised kernel, OPENBLAS_CORETYPE is set, or OpenBLAS is absent.
std::string RecommendedBlasCoreType();

// When RecommendedBlasCoreType() is not empty: sets OPENBLAS_CORETYPE and
// re-executes /proc/self/exe with the same argv (once: the variable is then
// set). Returns normally when nothing needs doing or the exec fails (then it
// logs a warning naming the variable to set).
void ReexecWithFastBlasIfNeeded(char** argv);

}  // namespace bert
