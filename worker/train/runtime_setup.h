// Process-level settings that decide CPU training speed, for main() of the
// worker and of benchmarks. Each was measured on this project's machines.
//
// 1. OpenBLAS kernels. Debian's LibTorch does its fp32 GEMMs in OpenBLAS
//    (libopenblas0-pthread), which picks its kernels by CPU model when it
//    loads; 0.3.21 (Debian 12) does not know recent Xeons (family 6 model
//    0xCF here) and falls back to its generic "Prescott" (SSE3) kernels: a
//    2048^3 sgemm ran at 24 GFLOP/s per core instead of 150 with the AVX-512
//    ("SkylakeX") ones. The switch is OPENBLAS_CORETYPE, read at load time.
// 2. OpenMP waiting. With 2 intra-op threads, libgomp's worker spins after
//    each parallel loop while OpenBLAS's own thread needs that core for the
//    next GEMM (and OpenBLAS's worker spins while OpenMP needs it):
//    OMP_WAIT_POLICY=PASSIVE made bert-base steps ~10% faster at 2 threads
//    here. Also read at load time.
// 3. Large allocations. glibc serves every block above 32 MiB (its largest
//    mmap threshold) with a fresh mmap and unmaps it on free, so each
//    training step page-faults its large activations in again (bert-tiny's
//    78 MB MLM logits: ~10% of a step here). KeepLargeAllocationsOnHeap()
//    turns mmap off and trimming down, so freed blocks are reused; the
//    process keeps its peak heap, fine for a long-running trainer.
//
// 4. Ranks sharing a machine. OpenBLAS starts one thread per CPU in every
//    process; N ranks on one machine (mpirun --bind-to none) would run N
//    times as many threads as CPUs. Each rank gets CPUs / N BLAS threads
//    (OPENBLAS_NUM_THREADS, read at load time) unless the launcher bound it
//    to fewer CPUs (then it has them all) or the user set the variable.
//
// Not thread-safe: call these first in main(), before other threads start.
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

// OpenBLAS threads for this process (4. above).
int BlasThreadsForThisRank();

// Sets OPENBLAS_NUM_THREADS under mpirun (4. above), OPENBLAS_CORETYPE (when RecommendedBlasCoreType() says so) and
// OMP_WAIT_POLICY=PASSIVE (when unset), and if either changed re-executes
// /proc/self/exe with the same argv (once: the second run finds them set).
// A variable the user set is never overridden. Returns normally when
// nothing changed or the exec fails (then it logs what to set by hand).
void ReexecWithTunedEnvironment(char** argv);

// mallopt(M_MMAP_MAX, 0) and a 2 GiB trim threshold (see 3. above).
void KeepLargeAllocationsOnHeap();

}  // namespace bert
