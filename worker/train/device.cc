#include "worker/train/device.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <cstdlib>
#include <mutex>

#if defined(BERT_WITH_CUDA)
#include <c10/cuda/CUDAStream.h>
#endif

namespace bert {
namespace {

bool ParseRank(const char* text, int* rank) {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < 0 || value > (1 << 20)) return false;
  *rank = static_cast<int>(value);
  return true;
}

}  // namespace

int LocalRankFromEnvironment() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "LOCAL_RANK"}) {
    int rank = 0;
    if (ParseRank(std::getenv(name), &rank)) return rank;
  }
  return 0;
}

int GpuForLocalRank(int local_rank, int visible_gpus) { return visible_gpus > 0 ? local_rank % visible_gpus : 0; }

Result<DeviceChoice> ChooseDevice(const std::string& requested, int local_rank, int visible_gpus,
                                  bool built_with_cuda, const std::string& key) {
  if (requested != "auto" && requested != "cpu" && requested != "cuda") {
    return Status::InvalidArgument(key + ": must be auto, cpu or cuda, got " + requested);
  }
  DeviceChoice choice;
  choice.local_rank = local_rank;
  choice.visible_gpus = built_with_cuda ? visible_gpus : 0;
  const bool use_cuda = requested == "cuda" || (requested == "auto" && choice.visible_gpus > 0);
  if (!use_cuda) {
    choice.description = requested == "cpu" ? "cpu (" + key + ": cpu)"
                                            : "cpu (" + key + ": auto; " +
                                                  (built_with_cuda ? "no GPU visible" : "LibTorch without CUDA") + ")";
    return choice;
  }
  if (!built_with_cuda) {
    return Status::InvalidArgument(key + ": cuda, but this bert-worker is built with a CPU-only LibTorch; rebuild "
                                   "with the CUDA wheel (scripts/setup.sh) or set " + key + ": cpu");
  }
  if (choice.visible_gpus <= 0) {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    return Status::InvalidArgument(key + ": cuda, but no CUDA device is visible to this process" +
                                   (visible ? " (CUDA_VISIBLE_DEVICES=" + std::string(visible) + ")" : "") +
                                   "; check nvidia-smi and the job's GPU allocation, or set " + key + ": cpu");
  }
  const int index = GpuForLocalRank(local_rank, choice.visible_gpus);
  choice.device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  choice.description = choice.device.str() + " (local rank " + std::to_string(local_rank) + "; " +
                       std::to_string(choice.visible_gpus) + " GPU" + (choice.visible_gpus == 1 ? "" : "s") +
                       " visible" +
                       (local_rank >= choice.visible_gpus ? ", more local ranks than GPUs: shared round-robin" : "") +
                       ")";
  return choice;
}

Result<DeviceChoice> ChooseDeviceForThisProcess(const std::string& requested, const std::string& key, bool tf32) {
#if defined(BERT_WITH_CUDA)
  constexpr bool kCuda = true;
  // Asking for the count initialises CUDA; skip it when the CPU was asked for.
  const int visible = requested == "cpu" ? 0 : static_cast<int>(torch::cuda::device_count());
#else
  constexpr bool kCuda = false;
  const int visible = 0;
#endif
  Result<DeviceChoice> choice = ChooseDevice(requested, LocalRankFromEnvironment(), visible, kCuda, key);
  if (!choice.ok() || !choice->device.is_cuda()) return choice;
  c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->setDevice(choice->device);
  at::globalContext().setAllowTF32CuBLAS(tf32);
  at::globalContext().setAllowTF32CuDNN(tf32);
  return choice;
}

void SeedDeviceGenerator(const torch::Device& device, uint64_t seed) {
  if (device.is_cpu()) return;
  at::Generator generator = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_current_seed(seed);  // also resets the Philox offset
}

void* CurrentDeviceStream(const torch::Device& device) {
#if defined(BERT_WITH_CUDA)
  if (device.is_cuda()) return c10::cuda::getCurrentCUDAStream(device.index()).stream();
#endif
  (void)device;
  return nullptr;
}

}  // namespace bert
