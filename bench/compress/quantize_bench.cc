// int8 quantization benchmark: predict throughput (texts/s at batch 32) and
// latency (batch 1: p50 and p99) on ONE CPU thread, of a fine-tuned fp32
// classifier beside its int8 copies (dynamic, and static calibrated on
// --calibration), on the same texts in the same run. The int8 copies are
// made here with bert-worker's own code (worker/compress/quantize.h) in a
// temporary directory; the three models are timed in turn, round after
// round, so a shared machine's load falls on all of them alike. Throughput
// is the best round's; latencies are over every round's calls. Also printed:
// how often int8's label is fp32's, and the largest probability difference.
//
//   quantize_bench --model FP32_DIR --texts FILE [--calibration FILE] [--rounds 3]
//                  [--latency-texts 200] [--max-seq-len 128] [--threads 1] [--peer]
// --peer: also PyTorch's own int8 in the same run (bench/compress/quantize_peer.py:
// transformers' BertForSequenceClassification of the same directory, fp32 and
// torch.ao.quantization.quantize_dynamic, same texts, batch 32, one thread).
// Goals (issue 15): int8 >= 2x fp32's throughput on one thread, <= 1 point of
// macro-F1 lost (macro-F1: bertctl eval, docs/compression.md).
#include "worker/torch.h"

#include <CLI/CLI.hpp>

#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/logging.h"
#include "common/file_util.h"
#include "finetune/classification_data.h"
#include "finetune/finetune_config.h"
#include "interop/pretrained.h"
#include "worker/compress/int8_format.h"
#include "worker/compress/quantize.h"
#include "worker/finetune/finetune_model.h"

namespace {

using namespace bert;  // NOLINT: a benchmark's main file
using Clock = std::chrono::steady_clock;

struct Model {
  std::string name;
  std::function<torch::Tensor(const ClassificationBatch&)> logits;
  double best_texts_per_s = 0;
  std::vector<double> latencies_ms;
  torch::Tensor probabilities;  // [N, C] at batch 32
};

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * (values.size() - 1) + 0.5));
  return values[index];
}

// A fresh directory under $TMPDIR for the int8 copies, removed at exit.
struct TempDir {
  std::string path;
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "quantize-bench-XXXXXX").string();
    path = ::mkdtemp(pattern.data()) ? pattern : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

void Fail(const std::string& message) {
  std::fprintf(stderr, "quantize_bench: %s\n", message.c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  InitLogging(argv[0]);
  CLI::App app{"int8 against fp32: predict throughput and latency on one CPU thread"};
  std::string model_dir, texts_path, calibration;
  int rounds = 3, latency_texts = 200, max_seq_len = 128, threads = 1, batch_size = 32;
  bool smoke = false;
  app.add_option("--model", model_dir, "Fine-tuned fp32 classifier directory (required unless --smoke)");
  app.add_option("--texts", texts_path, "Texts to classify (JSONL, CSV or TSV; required unless --smoke)");
  app.add_flag("--smoke", smoke, "Seconds: a random bert-tiny classifier on 8 texts, 1 round (proves it runs)");
  app.add_option("--calibration", calibration, "Calibration texts of the static int8 copy (default: --texts)");
  app.add_option("--rounds", rounds, "Timed rounds (all models each round)")->capture_default_str();
  app.add_option("--latency-texts", latency_texts, "Texts timed one by one per round")->capture_default_str();
  app.add_option("--max-seq-len", max_seq_len, "Tokens per text")->capture_default_str();
  app.add_option("--threads", threads, "Intra-op threads")->capture_default_str();
  app.add_option("--batch-size", batch_size, "Throughput batch")->capture_default_str();
  bool peer = false;
  app.add_flag("--peer", peer, "Also time PyTorch's quantize_dynamic on transformers (bench/compress/quantize_peer.py)");
  CLI11_PARSE(app, argc, argv);
  TempDir temp;
  if (smoke && model_dir.empty()) {
    // A random bert-tiny classifier of the uncased vocabulary, as finetune writes one, and 8 texts.
    finetune::FinetuneConfig config;
    config.model = std::string(BERT_SOURCE_DIR) + "/configs/models/bert-tiny.json";
    config.vocab = std::string(BERT_SOURCE_DIR) + "/configs/vocab/bert-base-uncased-vocab.txt";
    config.labels = {"a", "b"};
    config.max_seq_len = 32;
    Result<ClassifierBundle> random = BuildFinetuneModel(config);
    if (!random.ok()) Fail(random.status().message());
    model_dir = temp / "model";
    Status written = WriteHfDirectory(
        model_dir, ToHfClassifier(*random->model, random->model->parameters().values(), config.labels,
                                  *random->vocab, true, config.max_seq_len));
    if (!written.ok()) Fail(written.message());
    texts_path = temp / "texts.jsonl";
    std::string texts;
    for (int i = 0; i < 8; ++i) texts += "{\"text\": \"smoke text number " + std::to_string(i) + " for the bench\"}\n";
    written = WriteFileAtomic(texts_path, texts);
    if (!written.ok()) Fail(written.message());
    rounds = 1;
    latency_texts = 4;
  }
  if (model_dir.empty() || texts_path.empty()) Fail("--model and --texts are required (or --smoke)");
  if (calibration.empty()) calibration = texts_path;
  torch::set_num_threads(threads);
  torch::NoGradGuard no_grad;

  QuantizeOptions options;
  options.model_dir = model_dir;
  options.max_seq_len = max_seq_len;
  options.output = temp / "dynamic";
  QuantizeOutcome made = RunQuantize(options);
  if (!made.status.ok()) Fail(made.status.message());
  options.output = temp / "static";
  options.calibration = calibration;
  made = RunQuantize(options);
  if (!made.status.ok()) Fail(made.status.message());

  Result<ClassifierBundle> fp32 = LoadClassifier(model_dir, torch::kCPU);
  if (!fp32.ok()) Fail(fp32.status().message());
  Result<Int8Classifier> dynamic = LoadInt8Classifier(temp / "dynamic");
  if (!dynamic.ok()) Fail(dynamic.status().message());
  Result<Int8Classifier> fixed = LoadInt8Classifier(temp / "static");
  if (!fixed.ok()) Fail(fixed.status().message());

  finetune::FieldNames fields;
  Result<std::vector<finetune::Example>> examples =
      finetune::ReadExamples(texts_path, fields, finetune::FileFormat::kAuto, /*require_label=*/false);
  if (!examples.ok()) Fail(examples.status().message());
  for (finetune::Example& example : *examples) example.label.clear();
  Result<finetune::LabelMap> labels = finetune::LabelMap::FromNames(fp32->labels, model_dir);
  Result<finetune::EncodedSet> encoded =
      finetune::EncodeExamples(*examples, *labels, *fp32->tokenizer, max_seq_len, texts_path);
  if (!encoded.ok()) Fail(encoded.status().message());
  const std::vector<finetune::Feature>& features = encoded->features;
  const int64_t count = static_cast<int64_t>(features.size());
  const int32_t pad_id = std::max(0, fp32->vocab->pad_id());
  std::vector<int64_t> order(features.size());
  std::iota(order.begin(), order.end(), 0);
  int64_t tokens = 0;
  for (const finetune::Feature& feature : features) tokens += static_cast<int64_t>(feature.input_ids.size());

  BertForSequenceClassification* fp32_model = fp32->model.get();
  const Int8BertClassifier* dynamic_model = dynamic->model.get();
  const Int8BertClassifier* static_model = fixed->model.get();
  std::vector<Model> models(3);
  models[0].name = "fp32";
  models[0].logits = [&](const ClassificationBatch& b) {
    return fp32_model->Forward(b.input_ids, b.token_type_ids, b.lengths, false);
  };
  models[1].name = "int8 dynamic";
  models[1].logits = [&](const ClassificationBatch& b) {
    return dynamic_model->Forward(b.input_ids, b.token_type_ids, b.lengths);
  };
  models[2].name = "int8 static";
  models[2].logits = [&](const ClassificationBatch& b) {
    return static_model->Forward(b.input_ids, b.token_type_ids, b.lengths);
  };
  // Batches are collated once, outside the timing (as predict does before its forwards).
  std::vector<ClassificationBatch> batches, singles;
  for (int64_t first = 0; first < count; first += batch_size) {
    batches.push_back(CollateFeatures(features, order, first, std::min<int64_t>(count, first + batch_size), pad_id));
  }
  for (int64_t i = 0; i < std::min<int64_t>(count, latency_texts); ++i) {
    singles.push_back(CollateFeatures(features, order, i, i + 1, pad_id));
  }
  for (Model& model : models) model.logits(batches[0]);  // warm-up: packing, allocator
  for (int round = 0; round < rounds; ++round) {
    for (Model& model : models) {
      std::vector<torch::Tensor> parts;
      const Clock::time_point start = Clock::now();
      for (const ClassificationBatch& batch : batches) parts.push_back(model.logits(batch));
      model.best_texts_per_s = std::max(model.best_texts_per_s, count / Seconds(start));
      if (round == 0) model.probabilities = torch::softmax(torch::cat(parts), 1);
      for (const ClassificationBatch& single : singles) {
        const Clock::time_point call = Clock::now();
        model.logits(single);
        model.latencies_ms.push_back(1e3 * Seconds(call));
      }
    }
  }
  const BertConfig& config = fp32_model->config();
  std::printf("model %s: hidden %lld, %lld layers, intermediate %lld; %lld texts of %s, %.1f tokens on average "
              "(max %d); %d intra-op thread(s), engine %s, %d rounds\n",
              model_dir.c_str(), static_cast<long long>(config.hidden_size),
              static_cast<long long>(config.num_hidden_layers), static_cast<long long>(config.intermediate_size),
              static_cast<long long>(count), texts_path.c_str(), static_cast<double>(tokens) / count, max_seq_len,
              threads, SelectQuantizedEngine().c_str(), rounds);
  std::printf("%-13s %12s %8s %10s %10s %8s %14s %12s\n", "model", "texts/s@32", "speedup", "p50 ms@1", "p99 ms@1",
              "speedup", "labels = fp32", "max |dp|");
  const double fp32_rate = models[0].best_texts_per_s;
  const double fp32_p50 = Percentile(models[0].latencies_ms, 0.5);
  for (const Model& model : models) {
    const double p50 = Percentile(model.latencies_ms, 0.5), p99 = Percentile(model.latencies_ms, 0.99);
    const double agree =
        model.probabilities.argmax(1).eq(models[0].probabilities.argmax(1)).to(torch::kDouble).mean().item<double>();
    const double max_diff = (model.probabilities - models[0].probabilities).abs().max().item<double>();
    std::printf("%-13s %12.1f %7.2fx %10.2f %10.2f %7.2fx %13.1f%% %12.4f\n", model.name.c_str(),
                model.best_texts_per_s, model.best_texts_per_s / fp32_rate, p50, p99, fp32_p50 / p50, 100 * agree,
                max_diff);
  }
  if (peer) {
    const std::string command = std::string(BERT_PYTHON) + " " + BERT_SOURCE_DIR + "/bench/compress/quantize_peer.py " +
                                model_dir + " " + texts_path + " --max-seq-len " + std::to_string(max_seq_len) +
                                " --rounds " + std::to_string(rounds) + " --batch-size " + std::to_string(batch_size) +
                                " 2>/dev/null";
    std::string output;
    if (FILE* pipe = ::popen(command.c_str(), "r")) {
      char buffer[512];
      while (std::fgets(buffer, sizeof(buffer), pipe)) output += buffer;
      ::pclose(pipe);
    }
    const nlohmann::json rates = nlohmann::json::parse(output, nullptr, /*allow_exceptions=*/false);
    if (!rates.is_object() || !rates.contains("fp32_texts_per_s")) Fail("the peer failed: " + command);
    const double peer_fp32 = rates["fp32_texts_per_s"].get<double>(), peer_int8 = rates["int8_texts_per_s"].get<double>();
    std::printf("peer, PyTorch eager on transformers, batch %d, one thread: fp32 %.1f texts/s, quantize_dynamic int8 "
                "%.1f (%.2fx); ours against it: fp32 %.2fx, int8 dynamic %.2fx\n",
                batch_size, peer_fp32, peer_int8, peer_int8 / peer_fp32, fp32_rate / peer_fp32,
                models[1].best_texts_per_s / peer_int8);
  }
  return 0;
}
