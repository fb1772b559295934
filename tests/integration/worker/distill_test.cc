// bertctl distill end to end with the real worker (worker/finetune/distillation.h)
// on the fortunes fixture. The teacher is a bert-tiny fine-tuned here.
// - The student learns the teacher's mapping, not the labels: trained on a
//   training file whose labels are rotated (computers -> food -> love ->
//   computers), with alpha 1 (teacher only) it still classifies the test set
//   like the teacher does, while with alpha 0 (labels only) it learns the
//   rotation. A transfer set without labels is learnt from the teacher.
// - The teacher's outputs are cached; a second run reads them and trains
//   the same weights, byte for byte.
// - Bad teachers and transfer sets are refused before any training, with one
//   line naming them.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "integration/worker/finetune_fixture.h"
#include "interop/safetensors.h"
#include "test_util.h"

namespace bert {
namespace {

namespace fs = std::filesystem;

// `path`'s JSON lines with each label replaced by rotation[label] (or removed with "").
std::string Relabelled(const std::string& path, const std::map<std::string, std::string>& rotation) {
  std::string out;
  for (nlohmann::json line : ReadJsonLines(path)) {
    const std::string label = line["label"];
    if (rotation.at(label).empty()) {
      line.erase("label");
    } else {
      line["label"] = rotation.at(label);
    }
    out += line.dump() + "\n";
  }
  return out;
}

class DistillTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    finetune::FinetuneConfig config = FortunesConfig(Teacher(), TinyModel(*dir_, 0.1));
    config.epochs = 8;
    teacher_run_ = new testing::CommandResult(
        testing::RunCommand(Worker() + " --finetune " + WriteConfig(*dir_, "teacher.yaml", config)));
    testing::WriteText(*dir_ / "rotated_train.jsonl",
                       Relabelled(Fixture("train"), {{"computers", "food"}, {"food", "love"}, {"love", "computers"}}));
    testing::WriteText(*dir_ / "transfer.jsonl", Relabelled(Fixture("dev"), {{"computers", ""}, {"food", ""}, {"love", ""}}));
  }
  static void TearDownTestSuite() {
    delete teacher_run_;
    delete dir_;
  }
  static std::string Teacher() { return *dir_ / "teacher"; }

  // bertctl distill of a from-scratch bert-tiny student on the rotated labels.
  static testing::CommandResult Distill(const std::string& output, const std::string& extra,
                                        int max_seq_len = 48) {
    return testing::RunCommand(testing::Bertctl() + " distill --teacher " + Teacher() + " --student " +
                               TinyModel(*dir_, 0.1) + " --train " + (*dir_ / "rotated_train.jsonl") + " --dev " +
                               Fixture("dev") + " --test " + Fixture("test") + " --output " + output +
                               " --max-seq-len " + std::to_string(max_seq_len) + " --batch-size 16 --lr 1e-3 " + extra);
  }

  // Share of `model`'s test predictions equal to the teacher's.
  static double AgreementWithTeacher(const std::string& model) {
    std::vector<std::string> labels[2];
    int which = 0;
    for (const std::string& dir : {Teacher(), model}) {
      const std::string out = *dir_ / ("predictions-" + std::to_string(which) + ".jsonl");
      testing::CommandResult run = testing::RunCommand(testing::Bertctl() + " predict --model " + dir + " --input " +
                                                       Fixture("test") + " --output " + out);
      EXPECT_EQ(run.exit_code, 0) << run.output;
      for (const nlohmann::json& line : ReadJsonLines(out)) labels[which].push_back(line["label"]);
      ++which;
    }
    if (labels[0].empty() || labels[0].size() != labels[1].size()) return 0;
    double same = 0;
    for (size_t i = 0; i < labels[0].size(); ++i) same += labels[0][i] == labels[1][i];
    return same / static_cast<double>(labels[0].size());
  }

  static testing::TempDir* dir_;
  static testing::CommandResult* teacher_run_;
};
testing::TempDir* DistillTest::dir_ = nullptr;
testing::CommandResult* DistillTest::teacher_run_ = nullptr;

TEST_F(DistillTest, TheStudentLearnsTheTeachersMappingNotTheRotatedLabels) {
  ASSERT_EQ(teacher_run_->exit_code, 0) << teacher_run_->output;
  const double teacher_accuracy = ReadJson(Teacher() + "/metrics.json")["test"]["accuracy"];

  testing::CommandResult soft = Distill(*dir_ / "alpha1", "--epochs 8 --alpha 1 --temperature 2 --transfer " +
                                                              (*dir_ / "transfer.jsonl"));
  ASSERT_EQ(soft.exit_code, 0) << soft.output;
  const nlohmann::json metrics = ReadJson(*dir_ / "alpha1/metrics.json");
  EXPECT_EQ(metrics["distill"]["teacher"], Teacher());
  EXPECT_EQ(metrics["distill"]["alpha"], 1.0);
  EXPECT_EQ(metrics["distill"]["transfer_examples"], 60);
  const double soft_accuracy = metrics["test"]["accuracy"];
  const double soft_agreement = AgreementWithTeacher(*dir_ / "alpha1");

  testing::CommandResult hard = Distill(*dir_ / "alpha0", "--epochs 8 --alpha 0");
  ASSERT_EQ(hard.exit_code, 0) << hard.output;
  const double hard_accuracy = ReadJson(*dir_ / "alpha0/metrics.json")["test"]["accuracy"];
  std::printf("teacher test accuracy %.3f; student alpha 1: %.3f (agrees with the teacher on %.3f), alpha 0: %.3f\n",
              teacher_accuracy, soft_accuracy, soft_agreement, hard_accuracy);
  // Chance is 1/3 (20 test examples a topic). The labels-only student
  // learns the rotation, so on the true labels it is no better than chance
  // (measured here: 0.333, the dev set keeping an early model); the
  // teacher-only student does as well as its teacher (measured: 0.650, the
  // teacher 0.650, agreeing on 0.767 of the test set).
  EXPECT_LT(hard_accuracy, 0.4);
  EXPECT_GT(soft_accuracy, 0.5);
  EXPECT_GT(soft_accuracy, hard_accuracy + 0.2);
  EXPECT_GT(soft_agreement, 0.65);
}

TEST_F(DistillTest, TheTeachersOutputsAreCachedAndASecondRunTrainsTheSameWeights) {
  ASSERT_EQ(teacher_run_->exit_code, 0) << teacher_run_->output;
  const std::string cache = *dir_ / "cache/teacher.safetensors";
  fs::create_directories(*dir_ / "cache");
  testing::CommandResult first = Distill(*dir_ / "first", "--epochs 2 --teacher-logits " + cache);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("labelled 240 examples"), std::string::npos) << first.output;
  ASSERT_TRUE(fs::exists(cache));
  testing::CommandResult second = Distill(*dir_ / "second", "--epochs 2 --teacher-logits " + cache);
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("outputs for 240 examples read from " + cache), std::string::npos) << second.output;
  EXPECT_EQ(*ReadFile(*dir_ / "first/model.safetensors"), *ReadFile(*dir_ / "second/model.safetensors"));
  // Another data set (a longer max_seq_len reads the texts differently) is not served from the cache.
  testing::CommandResult other = Distill(*dir_ / "third", "--epochs 1 --teacher-logits " + cache, 40);
  ASSERT_EQ(other.exit_code, 0) << other.output;
  EXPECT_NE(other.output.find("computing them again"), std::string::npos) << other.output;
}

// Data-parallel: the ranks share the teacher's work and train what one process trains.
TEST_F(DistillTest, TwoWorkersDistillTheSameWeightsAsOne) {
  ASSERT_EQ(teacher_run_->exit_code, 0) << teacher_run_->output;
  std::vector<NamedTensor> weights[2];
  for (int workers : {1, 2}) {
    const std::string output = *dir_ / ("workers" + std::to_string(workers));
    // Dropout off: each rank draws its own masks, so only then are the runs equal.
    testing::CommandResult run = testing::RunCommand(
        testing::Bertctl() + " distill --teacher " + Teacher() + " --student " + TinyModel(*dir_, 0.0) + " --train " +
        (*dir_ / "rotated_train.jsonl") + " --dev " + Fixture("dev") + " --output " + output +
        " --max-seq-len 48 --batch-size 16 --lr 1e-3 --epochs 1 --transfer " + (*dir_ / "transfer.jsonl") +
        " --workers " + std::to_string(workers));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    Result<std::vector<NamedTensor>> tensors = ReadSafetensors(output + "/model.safetensors");
    ASSERT_TRUE(tensors.ok()) << tensors.status().message();
    weights[workers - 1] = std::move(tensors).value();
  }
  ASSERT_EQ(weights[0].size(), weights[1].size());
  double largest = 0;
  for (size_t t = 0; t < weights[0].size(); ++t) {
    for (size_t i = 0; i < weights[0][t].values.size(); ++i) {
      largest = std::max<double>(largest, std::abs(weights[0][t].values[i] - weights[1][t].values[i]));
    }
  }
  EXPECT_LT(largest, 1e-5);
}

TEST_F(DistillTest, BadTeachersAndTransferSetsAreRefusedNamingThem) {
  ASSERT_EQ(teacher_run_->exit_code, 0) << teacher_run_->output;
  // A teacher with other labels.
  const std::string other = *dir_ / "other-teacher";
  fs::create_directories(other);
  for (const char* name : {"model.safetensors", "vocab.txt", "tokenizer_config.json"}) {
    fs::copy_file(Teacher() + "/" + name, other + "/" + name, fs::copy_options::overwrite_existing);
  }
  nlohmann::json config = ReadJson(Teacher() + "/config.json");
  config["id2label"]["2"] = "sports";
  testing::WriteText(other + "/config.json", config.dump());
  const std::string common = " --student " + TinyModel(*dir_, 0.1) + " --train " + Fixture("train") + " --dev " +
                             Fixture("dev") + " --output " + (*dir_ / "refused");
  testing::CommandResult r = testing::RunCommand(testing::Bertctl() + " distill --teacher " + other + common);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("has the labels computers, food, sports but the training data has computers, food, love"),
            std::string::npos)
      << r.output;
  // Not a classifier: config.json without id2label.
  config.erase("id2label");
  config.erase("label2id");
  testing::WriteText(other + "/config.json", config.dump());
  r = testing::RunCommand(testing::Bertctl() + " distill --teacher " + other + common);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("has no id2label (not a fine-tuned classifier"), std::string::npos) << r.output;
  // No teacher at all.
  r = testing::RunCommand(testing::Bertctl() + " distill" + common);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--teacher: required"), std::string::npos) << r.output;
  // A transfer example with a label the training data does not have.
  testing::WriteText(*dir_ / "bad_transfer.jsonl", "{\"text\": \"a quiet evening\"}\n"
                                                   "{\"text\": \"the final whistle\", \"label\": \"sports\"}\n");
  r = testing::RunCommand(testing::Bertctl() + " distill --teacher " + Teacher() + common + " --transfer " +
                          (*dir_ / "bad_transfer.jsonl"));
  EXPECT_EQ(r.exit_code, 7) << r.output;
  EXPECT_NE(r.output.find("bad_transfer.jsonl:2: unknown label \"sports\""), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(*dir_ / "refused/finetune.yaml"));
}

}  // namespace
}  // namespace bert
