#include "worker/finetune/distillation.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "common/logging.h"
#include "interop/safetensors.h"
#include "worker/finetune/finetune_model.h"
#include "worker/finetune/finetune_predict.h"

namespace bert {
namespace {

namespace fs = std::filesystem;

constexpr char kCacheTensor[] = "teacher_log_probs";

// FNV-1a, 64 bits: the cache's key over the teacher's files and the examples.
class Fingerprint {
 public:
  void Add(const char* data, size_t size) {
    for (size_t i = 0; i < size; ++i) {
      hash_ ^= static_cast<uint8_t>(data[i]);
      hash_ *= 0x100000001b3ULL;
    }
  }
  void Add(const std::string& text) {
    Add(text.data(), text.size());
    Add("\x1f", 1);  // a separator, so that ("ab", "c") and ("a", "bc") differ
  }
  std::string Hex() const {
    char out[17];
    std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(hash_));
    return out;
  }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ULL;
};

// Every regular file of the teacher directory, by name, then the inputs.
Result<std::string> CacheKey(const std::string& teacher, const std::vector<finetune::Example>& examples,
                             const std::vector<std::string>& labels, int32_t max_seq_len) {
  Fingerprint key;
  std::vector<fs::path> files;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(teacher, ec)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  if (ec) return Status::IoError(teacher + ": cannot list: " + ec.message());
  std::sort(files.begin(), files.end());
  std::vector<char> buffer(size_t{1} << 20);
  for (const fs::path& file : files) {
    key.Add(file.filename().string());
    std::ifstream in(file, std::ios::binary);
    if (!in) return Status::IoError(file.string() + ": cannot open");
    while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
      key.Add(buffer.data(), static_cast<size_t>(in.gcount()));
    }
  }
  for (const std::string& label : labels) key.Add(label);
  key.Add(std::to_string(max_seq_len));
  for (const finetune::Example& example : examples) {
    key.Add(example.text);
    key.Add(example.text_pair);
  }
  return key.Hex();
}

// The cached tensor when `cache` holds one for `key` of [n, c]; undefined otherwise.
torch::Tensor ReadCache(const std::string& cache, const std::string& key, int64_t n, int64_t c) {
  std::error_code ec;
  if (cache.empty() || !fs::exists(cache, ec)) return {};
  Result<std::vector<NamedTensor>> tensors = ReadSafetensors(cache);
  if (!tensors.ok()) {
    LOG(WARNING) << "[distill] " << tensors.status().message() << "; computing the teacher's outputs again";
    return {};
  }
  Result<SafetensorsHeader> header = Status::NotFound("");
  {
    std::ifstream in(cache, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    header = ParseSafetensorsHeader(bytes, bytes.size(), cache);
  }
  if (!header.ok() || header->metadata.count("key") == 0 || header->metadata.at("key") != key) {
    LOG(INFO) << "[distill] " << cache << " holds another teacher's or data set's outputs; computing them again";
    return {};
  }
  if (tensors->size() != 1 || (*tensors)[0].name != kCacheTensor || (*tensors)[0].shape != std::vector<int64_t>{n, c}) {
    LOG(WARNING) << "[distill] " << cache << ": not a [" << n << ", " << c << "] " << kCacheTensor
                 << " tensor; computing the teacher's outputs again";
    return {};
  }
  return torch::from_blob((*tensors)[0].values.data(), {n, c}, torch::kFloat32).clone();
}

}  // namespace

torch::Tensor DistillationLoss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                               double temperature, double normalizer) {
  CHECK_GT(temperature, 0);
  CHECK_GT(normalizer, 0);
  const torch::Tensor teacher_log_p = torch::log_softmax(teacher_logits.to(student_logits.dtype()) / temperature, 1);
  const torch::Tensor student_log_p = torch::log_softmax(student_logits / temperature, 1);
  // KL(P_t || P_s) = sum_c p_t (log p_t - log p_s), per row.
  const torch::Tensor kl = (teacher_log_p.exp() * (teacher_log_p - student_log_p)).sum();
  return kl * (temperature * temperature / normalizer);
}

Result<torch::Tensor> TeacherLogProbs(const finetune::FinetuneConfig& config,
                                      const std::vector<finetune::Example>& examples,
                                      const std::vector<std::string>& student_labels, const std::string& cache,
                                      Communicator* comm, torch::Device device) {
  const std::string& teacher = config.distill_teacher;
  const int rank = comm != nullptr ? comm->rank() : 0;
  const int64_t n = static_cast<int64_t>(examples.size()), c = static_cast<int64_t>(student_labels.size());
  Result<ClassifierBundle> bundle = LoadClassifier(teacher, device);
  if (!bundle.ok()) return Status::InvalidArgument("distill.teacher: " + bundle.status().message());
  // Teacher column of each student label; the two label sets must be equal.
  std::vector<int64_t> columns;
  std::string known;
  for (const std::string& name : bundle->labels) known += (known.empty() ? "" : ", ") + name;
  for (const std::string& label : student_labels) {
    const auto it = std::find(bundle->labels.begin(), bundle->labels.end(), label);
    if (it == bundle->labels.end()) {
      return Status::InvalidArgument("distill.teacher: " + teacher + " does not know the label \"" + label +
                                     "\" of the training data (its labels: " + known + ")");
    }
    columns.push_back(it - bundle->labels.begin());
  }
  if (bundle->labels.size() != student_labels.size()) {
    return Status::InvalidArgument("distill.teacher: " + teacher + " has " + std::to_string(bundle->labels.size()) +
                                   " labels (" + known + ") but the training data has " +
                                   std::to_string(student_labels.size()) + "; they must be the same labels");
  }
  const int32_t max_seq_len =
      std::min<int32_t>(config.max_seq_len, static_cast<int32_t>(bundle->model->config().max_position_embeddings));
  Result<std::string> key = CacheKey(teacher, examples, student_labels, max_seq_len);
  if (!key.ok()) return Status::InvalidArgument("distill.teacher: " + key.status().message());

  torch::Tensor cached = ReadCache(cache, *key, n, c);
  double all_hit = cached.defined() ? 1 : 0;  // every rank reads it, or none does
  if (comm != nullptr && comm->world_size() > 1) {
    BERT_RETURN_IF_ERROR(comm->AllReduce(&all_hit, 1, CommDataType::kFloat64, CommReduceOp::kMin));
  }
  if (all_hit == 1) {
    if (rank == 0) LOG(INFO) << "[distill] the teacher's outputs for " << n << " examples read from " << cache;
    return cached;
  }

  const auto start = std::chrono::steady_clock::now();
  Result<finetune::LabelMap> labels = finetune::LabelMap::FromNames(student_labels, "the training labels");
  if (!labels.ok()) return labels.status();
  Result<finetune::EncodedSet> encoded =
      finetune::EncodeExamples(examples, *labels, *bundle->tokenizer, max_seq_len, "distill.teacher " + teacher);
  if (!encoded.ok()) return encoded.status();
  const int32_t pad_id = std::max(0, bundle->vocab->pad_id());
  Result<InferenceResult> inference = RunInference(bundle->model.get(), encoded->features, 64, pad_id, comm);
  if (!inference.ok()) return inference.status();
  // Log-probabilities (double, then float) as logits; the student's label order.
  const torch::Tensor index = torch::tensor(columns, torch::kLong);
  torch::Tensor log_probs =
      inference->probabilities.index_select(1, index).clamp_min(1e-300).log().to(torch::kFloat32).contiguous();
  if (rank == 0) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    LOG(INFO) << "[distill] teacher " << teacher << " labelled " << n << " examples in " << seconds << " s ("
              << static_cast<double>(n) / std::max(seconds, 1e-9) << " examples/s)";
    if (!cache.empty()) {
      NamedTensor tensor{kCacheTensor, {n, c}, std::vector<float>(log_probs.data_ptr<float>(),
                                                                  log_probs.data_ptr<float>() + n * c)};
      Status written = WriteSafetensors(cache, {tensor}, {{"key", *key}, {"teacher", teacher}});
      if (!written.ok()) return Status::IoError("distill.teacher_logits: " + written.message());
    }
  }
  return log_probs;
}

}  // namespace bert
