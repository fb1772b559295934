// Where a worker process computes: `train.device` (auto | cpu | cuda) of the
// run or fine-tuning config, resolved once per process at startup.
//
// One process per GPU: the process takes GPU (local rank mod visible GPUs),
// its local rank being the launcher's (OMPI_COMM_WORLD_LOCAL_RANK from
// mpirun, SLURM_LOCALID from srun, MPI_LOCALRANKID from MPICH/Hydra,
// LOCAL_RANK from torchrun-style launchers; 0 when started alone). "auto"
// is CUDA when this LibTorch has CUDA and a GPU is visible, else the CPU;
// "cuda" without a visible GPU is an error naming the key, what was found
// and what to do. More local ranks than visible GPUs share GPUs round-robin
// (NCCL refuses two ranks on one GPU, so the NCCL backend then fails at
// startup with its own message; CPU-side runs are unaffected).
//
// The same code path runs on the CPU: ChooseDevice is a pure function of
// its arguments, tested here with any GPU count; only
// ChooseDeviceForThisProcess asks LibTorch how many GPUs are visible.
#pragma once

#include <cstdint>
#include <string>

#include "worker/torch.h"

#include "common/status.h"

namespace bert {

struct DeviceChoice {
  torch::Device device = torch::kCPU;
  int local_rank = 0;        // the launcher's local rank (0 when none)
  int visible_gpus = 0;      // CUDA devices this process sees
  std::string description;   // one line for the log, e.g. "cuda:1 (local rank 1; 8 GPUs visible)"
};

// This process's local rank from the launcher's environment (see above); 0
// when none is set. A set but malformed value is ignored.
int LocalRankFromEnvironment();

// The GPU index local rank `local_rank` uses among `visible_gpus` (> 0).
int GpuForLocalRank(int local_rank, int visible_gpus);

// Resolves `requested` (auto | cpu | cuda). `key` names the config key in
// errors ("train.device"); built_with_cuda: whether LibTorch has CUDA.
Result<DeviceChoice> ChooseDevice(const std::string& requested, int local_rank, int visible_gpus,
                                  bool built_with_cuda, const std::string& key);

// ChooseDevice with the environment's local rank and LibTorch's visible GPU
// count; on CUDA it also makes that GPU the current one and applies `tf32`
// (cuBLAS and cuDNN TF32 for fp32 GEMMs and convolutions).
Result<DeviceChoice> ChooseDeviceForThisProcess(const std::string& requested, const std::string& key,
                                                bool tf32 = false);

// Reseeds the device's default random generator (CUDA dropout, including
// scaled_dot_product_attention's, draws from it), so that a rank's masks
// are a function of its own checkpointed dropout stream rather than shared
// by every rank. No-op on the CPU, where dropout draws from DropoutRng.
void SeedDeviceGenerator(const torch::Device& device, uint64_t seed);

// The cudaStream_t LibTorch computes on for `device` (the current stream),
// as the NCCL communicator takes it; nullptr on the CPU.
void* CurrentDeviceStream(const torch::Device& device);

}  // namespace bert
