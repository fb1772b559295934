// Device placement (worker/train/device.h): which device each process takes
// for every train.device value, GPU count and local rank, as the launchers
// set it; the errors a user gets when the GPU is not there. The choice is a
// pure function, so GPU counts are simulated here; only the last test asks
// LibTorch about this machine.
#include "worker/train/device.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "worker/train/train_step.h"

namespace bert {
namespace {

// Sets the named variables for the scope and restores the old values.
class ScopedEnv {
 public:
  ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> values) {
    for (const char* name : kLauncherVariables) {
      const char* old = std::getenv(name);
      saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      unsetenv(name);
    }
    for (const auto& [name, value] : values) setenv(name, value, 1);
  }
  ~ScopedEnv() {
    for (const auto& [name, value] : saved_) {
      if (value) {
        setenv(name.c_str(), value->c_str(), 1);
      } else {
        unsetenv(name.c_str());
      }
    }
  }
  static constexpr const char* kLauncherVariables[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID",
                                                       "MPI_LOCALRANKID", "LOCAL_RANK"};

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(DeviceTest, LocalRankComesFromMpirunThenSlurmThenOthers) {
  {
    ScopedEnv env({});
    EXPECT_EQ(LocalRankFromEnvironment(), 0) << "started alone";
  }
  {
    ScopedEnv env({{"OMPI_COMM_WORLD_LOCAL_RANK", "3"}, {"SLURM_LOCALID", "5"}});
    EXPECT_EQ(LocalRankFromEnvironment(), 3) << "mpirun's own variable wins";
  }
  {
    ScopedEnv env({{"SLURM_LOCALID", "5"}});
    EXPECT_EQ(LocalRankFromEnvironment(), 5) << "srun --mpi=pmix";
  }
  {
    ScopedEnv env({{"MPI_LOCALRANKID", "2"}});
    EXPECT_EQ(LocalRankFromEnvironment(), 2);
  }
  {
    ScopedEnv env({{"OMPI_COMM_WORLD_LOCAL_RANK", "x1"}, {"LOCAL_RANK", "6"}});
    EXPECT_EQ(LocalRankFromEnvironment(), 6) << "a malformed value is skipped";
  }
}

TEST(DeviceTest, EachLocalRankTakesItsOwnGpuAndWrapsAround) {
  for (int rank = 0; rank < 8; ++rank) EXPECT_EQ(GpuForLocalRank(rank, 8), rank);
  EXPECT_EQ(GpuForLocalRank(9, 8), 1);
  EXPECT_EQ(GpuForLocalRank(3, 1), 0);
  Result<DeviceChoice> choice = ChooseDevice("cuda", 5, 8, /*built_with_cuda=*/true, "train.device");
  ASSERT_TRUE(choice.ok()) << choice.status().ToString();
  EXPECT_TRUE(choice->device.is_cuda());
  EXPECT_EQ(choice->device.index(), 5);
  EXPECT_EQ(choice->description, "cuda:5 (local rank 5; 8 GPUs visible)");
  choice = ChooseDevice("auto", 9, 8, true, "train.device");
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->device.index(), 1);
  EXPECT_NE(choice->description.find("more local ranks than GPUs"), std::string::npos) << choice->description;
}

TEST(DeviceTest, AutoIsCudaOnlyWithAGpuAndCudaLibTorch) {
  struct Case {
    const char* requested;
    int gpus;
    bool cuda_build;
    bool expect_cuda;
  };
  for (const Case& c : {Case{"auto", 2, true, true}, Case{"auto", 0, true, false}, Case{"auto", 2, false, false},
                        Case{"cpu", 2, true, false}, Case{"cuda", 1, true, true}}) {
    Result<DeviceChoice> choice = ChooseDevice(c.requested, 0, c.gpus, c.cuda_build, "train.device");
    ASSERT_TRUE(choice.ok()) << c.requested << ": " << choice.status().ToString();
    EXPECT_EQ(choice->device.is_cuda(), c.expect_cuda) << c.requested << " with " << c.gpus << " GPUs";
    if (!c.expect_cuda) EXPECT_EQ(choice->description.rfind("cpu (train.device: ", 0), 0u) << choice->description;
  }
}

TEST(DeviceTest, CudaWithoutAGpuOrWithoutCudaLibTorchIsAClearError) {
  Result<DeviceChoice> none = ChooseDevice("cuda", 0, 0, /*built_with_cuda=*/true, "train.device");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(none.status().message().find("train.device: cuda, but no CUDA device is visible"), std::string::npos)
      << none.status().message();
  EXPECT_NE(none.status().message().find("or set train.device: cpu"), std::string::npos);
  Result<DeviceChoice> cpu_build = ChooseDevice("cuda", 0, 4, /*built_with_cuda=*/false, "train.device");
  ASSERT_FALSE(cpu_build.ok());
  EXPECT_NE(cpu_build.status().message().find("CPU-only LibTorch"), std::string::npos);
  Result<DeviceChoice> typo = ChooseDevice("gpu", 0, 4, true, "train.device");
  ASSERT_FALSE(typo.ok());
  EXPECT_EQ(typo.status().message(), "train.device: must be auto, cpu or cuda, got gpu");
}

// This machine, through LibTorch: with no visible GPU "auto" trains on the
// CPU and "cuda" fails; with one, "cuda" takes the local rank's GPU.
TEST(DeviceTest, ThisProcessGetsAnHonestAnswer) {
  ScopedEnv env({});
  Result<DeviceChoice> automatic = ChooseDeviceForThisProcess("auto", "train.device");
  ASSERT_TRUE(automatic.ok()) << automatic.status().ToString();
  Result<DeviceChoice> cuda = ChooseDeviceForThisProcess("cuda", "train.device");
  if (automatic->device.is_cpu()) {
    EXPECT_FALSE(cuda.ok()) << "no GPU here, yet train.device: cuda was accepted";
  } else {
    ASSERT_TRUE(cuda.ok()) << cuda.status().ToString();
    EXPECT_EQ(cuda->device.index(), 0);
  }
  EXPECT_EQ(automatic->device.is_cuda(), BuiltWithCuda() && automatic->visible_gpus > 0);
}

}  // namespace
}  // namespace bert
