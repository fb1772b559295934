// int8 quantization (worker/compress/): the int8 Linear against fp32 and
// against an exact emulation of its arithmetic, the classifier graph against
// BertForSequenceClassification, and every refusal of the int8 loader.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/file_util.h"
#include "interop/pretrained.h"
#include "interop/safetensors.h"
#include "test_util.h"
#include "unit/worker/model_test_util.h"
#include "worker/compress/int8_format.h"
#include "worker/compress/int8_model.h"
#include "worker/compress/quantize.h"
#include "worker/compress/quantized_linear.h"
#include "worker/finetune/finetune_model.h"
#include "worker/model/bert_heads.h"

namespace bert {
namespace {

namespace fs = std::filesystem;

// Largest |a - b| relative to the largest |b|.
double RelativeError(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

TEST(QuantizeWeightTest, SymmetricPerRowWithinHalfAStep) {
  torch::manual_seed(1);
  torch::Tensor w = torch::randn({16, 40}) * torch::linspace(0.01, 2.0, 16).unsqueeze(1);
  w[3].zero_();
  const Int8Weight q = QuantizeWeightPerChannel(w);
  ASSERT_EQ(q.values.scalar_type(), torch::kChar);
  EXPECT_GE(q.values.min().item<int>(), -127);
  EXPECT_LE(q.values.max().item<int>(), 127);
  EXPECT_EQ(q.scale[3].item<float>(), 1.0f);  // an all-zero row: scale 1, zeros
  EXPECT_EQ(q.values[3].abs().max().item<int>(), 0);
  for (int64_t r = 0; r < 16; ++r) {
    if (r == 3) continue;
    EXPECT_EQ(q.values[r].abs().max().item<int>(), 127) << "row " << r;  // the row's max maps to +-127
    const torch::Tensor back = q.values[r].to(torch::kFloat) * q.scale[r];
    EXPECT_LE((back - w[r]).abs().max().item<float>(), q.scale[r].item<float>() * 0.5f + 1e-7f) << "row " << r;
  }
}

TEST(ActivationQuantTest, RangesIncludeZeroOnTheUint8Grid) {
  ActivationQuant q = ActivationQuantFromRange(-1.0f, 3.0f);
  EXPECT_FLOAT_EQ(q.scale, 4.0f / 255);
  EXPECT_EQ(q.zero_point, 64);  // round(1 / (4/255)) = round(63.75)
  q = ActivationQuantFromRange(0.5f, 2.0f);  // 0 joins the range
  EXPECT_FLOAT_EQ(q.scale, 2.0f / 255);
  EXPECT_EQ(q.zero_point, 0);
  q = ActivationQuantFromRange(-2.0f, -1.0f);
  EXPECT_EQ(q.zero_point, 255);
  q = ActivationQuantFromRange(0.0f, 0.0f);  // degenerate: scale 1
  EXPECT_EQ(q.scale, 1.0f);
  EXPECT_EQ(q.zero_point, 0);
  q = ActivationQuantFromRange(std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(q.scale, 1.0f);  // never observed
}

class QuantizedLinearTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(SelectQuantizedEngine().empty());
    torch::manual_seed(7);
    x_ = torch::randn({64, 128});
    x_.select(1, 5).mul_(4);  // an outlier feature, as BERT has
    weight_ = torch::randn({96, 128}) * 0.05;
    bias_ = torch::randn({96}) * 0.1;
    expected_ = torch::addmm(bias_, x_, weight_.t());
  }
  torch::Tensor x_, weight_, bias_, expected_;
};

// Tolerance against fp32: 8-bit weights and activations give 2.3% of the
// output's range on these data (the outlier column widens the activation
// grid to about 0.12; the error of a 128-term dot product is then about 0.02,
// its largest over 6144 outputs 4 sigma); 5% still fails a wrong scale, zero
// point or transposition, which are off by far more. The static test also
// checks the kernel against an exact emulation of its arithmetic (1e-4).
TEST_F(QuantizedLinearTest, DynamicMatchesFp32) {
  const QuantizedLinear linear = QuantizedLinear::Dynamic(QuantizeWeightPerChannel(weight_), bias_);
  const torch::Tensor y = linear.Forward(x_);
  ASSERT_EQ(y.sizes(), expected_.sizes());
  ASSERT_EQ(y.scalar_type(), torch::kFloat);
  const double error = RelativeError(y, expected_);
  std::printf("dynamic int8 Linear: max error %.4f of the output range\n", error);
  EXPECT_LT(error, 0.05);
  EXPECT_GT(error, 0.0);  // it is not an fp32 GEMM in disguise
}

TEST_F(QuantizedLinearTest, StaticMatchesFp32AndTheExactEmulation) {
  RangeObserver observer;
  observer.Observe(x_);
  EXPECT_EQ(observer.rows, 64);
  const ActivationQuant input = ActivationQuantFromRange(observer.lo, observer.hi);
  const Int8Weight weight = QuantizeWeightPerChannel(weight_);
  const QuantizedLinear linear = QuantizedLinear::Static(weight, bias_, input);
  ASSERT_TRUE(linear.is_static());
  const torch::Tensor y = linear.Forward(x_);
  const double error = RelativeError(y, expected_);
  std::printf("static int8 Linear: max error %.4f of the output range\n", error);
  EXPECT_LT(error, 0.05);
  // The kernel's arithmetic: (q(x) - zp) * s_x times the dequantized weight.
  ActivationQuant used = input;
  if (QuantizedReduceRange()) {
    used.scale = input.scale * 255.0f / 127.0f;
    used.zero_point = static_cast<int32_t>(std::nearbyint(input.zero_point * 127.0 / 255.0));
  }
  const int quant_max = QuantizedReduceRange() ? 127 : 255;
  const torch::Tensor qx = torch::clamp(torch::round(x_ / used.scale) + used.zero_point, 0, quant_max);
  const torch::Tensor emulated =
      torch::addmm(bias_, (qx - used.zero_point) * used.scale,
                   (weight.values.to(torch::kFloat) * weight.scale.unsqueeze(1)).t());
  EXPECT_LT(RelativeError(y, emulated), 1e-4);
  // Inputs beyond the calibrated range saturate rather than wrap.
  const torch::Tensor wide = linear.Forward(x_ * 10);
  EXPECT_TRUE(torch::isfinite(wide).all().item<bool>());
}

// The engine for ARM and other CPUs without fbgemm: qnnpack (where this
// LibTorch has it), whose static path rounds the input to its calibrated grid
// and runs the dynamic kernel. The same tolerance holds.
TEST_F(QuantizedLinearTest, QnnpackEngineMatchesFp32Too) {
  const std::vector<at::QEngine>& engines = at::globalContext().supportedQEngines();
  if (std::find(engines.begin(), engines.end(), at::QEngine::QNNPACK) == engines.end()) {
    GTEST_SKIP() << "this LibTorch has no qnnpack";
  }
  const at::QEngine before = at::globalContext().qEngine();
  at::globalContext().setQEngine(at::QEngine::QNNPACK);
  EXPECT_FALSE(QuantizedReduceRange());
  RangeObserver observer;
  observer.Observe(x_);
  const Int8Weight weight = QuantizeWeightPerChannel(weight_);
  const torch::Tensor dynamic = QuantizedLinear::Dynamic(weight, bias_).Forward(x_);
  const torch::Tensor fixed =
      QuantizedLinear::Static(weight, bias_, ActivationQuantFromRange(observer.lo, observer.hi)).Forward(x_);
  at::globalContext().setQEngine(before);
  std::printf("qnnpack int8 Linear: max error %.4f dynamic, %.4f static\n", RelativeError(dynamic, expected_),
              RelativeError(fixed, expected_));
  EXPECT_LT(RelativeError(dynamic, expected_), 0.05);
  EXPECT_LT(RelativeError(fixed, expected_), 0.05);
}

// A random classifier with both LayerNorm placements.
class Int8ClassifierTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    config_ = testing::TinyConfig();
    config_.num_labels = 3;
    config_.pre_layer_norm = GetParam();
    ModelOptions options;
    options.seed = 11;
    model_ = std::make_unique<BertForSequenceClassification>(config_, options);
    // Biases and LayerNorm away from their zero/one init, so that they count.
    torch::NoGradGuard no_grad;
    model_->parameters().values().add_(torch::randn_like(model_->parameters().values()) * 0.02);
    for (const ParameterSlot& slot : model_->parameters().slots()) {
      tensors_[slot.spec.name] = model_->parameters().param(slot.spec.name).detach();
    }
    torch::manual_seed(3);
    ids_ = torch::randint(5, config_.vocab_size, {6, 12}, torch::kLong);
    types_ = torch::zeros({6, 12}, torch::kLong);
    types_.narrow(1, 6, 6).fill_(1);
    lengths_ = torch::tensor({12, 7, 3, 12, 9, 1}, torch::kLong);
  }
  torch::Tensor Fp32Logits() { return model_->Forward(ids_, types_, lengths_, false); }

  BertConfig config_;
  std::unique_ptr<BertForSequenceClassification> model_;
  std::map<std::string, torch::Tensor> tensors_;
  torch::Tensor ids_, types_, lengths_;
};

TEST_P(Int8ClassifierTest, FloatGraphIsBertForSequenceClassification) {
  const torch::Tensor logits = Int8BertClassifier::FromFloat(config_, tensors_)->Forward(ids_, types_, lengths_);
  EXPECT_LT((logits - Fp32Logits()).abs().max().item<double>(), 1e-5);
}

TEST_P(Int8ClassifierTest, DynamicAndStaticLogitsFollowFp32) {
  std::map<std::string, Int8Weight> weights;
  std::map<std::string, RangeObserver> observers;
  Int8BertClassifier::FromFloat(config_, tensors_, &observers)->Forward(ids_, types_, lengths_);
  InputQuantMap inputs;
  for (const std::string& name : ClassifierLinearNames(config_)) {
    weights[name] = QuantizeWeightPerChannel(tensors_.at(name + ".weight"));
    const std::string observed = name.find("attention.self.") != std::string::npos
                                     ? name.substr(0, name.rfind('.')) + ".query"
                                     : name;
    ASSERT_GT(observers[observed].rows, 0) << name;
    inputs[name] = ActivationQuantFromRange(observers[observed].lo, observers[observed].hi);
  }
  const torch::Tensor fp32 = Fp32Logits();
  const torch::Tensor dynamic =
      Int8BertClassifier::FromInt8(config_, tensors_, weights, {})->Forward(ids_, types_, lengths_);
  auto static_model = Int8BertClassifier::FromInt8(config_, tensors_, weights, inputs);
  ASSERT_TRUE(static_model->is_static());
  const torch::Tensor fixed = static_model->Forward(ids_, types_, lengths_);
  // Measured about 1-3% of the logits' range on this random model (the
  // calibration set is the input itself); 10% still catches a wrong layer.
  std::printf("logits error of the range: dynamic %.4f, static %.4f\n", RelativeError(dynamic, fp32),
              RelativeError(fixed, fp32));
  EXPECT_LT(RelativeError(dynamic, fp32), 0.10);
  EXPECT_LT(RelativeError(fixed, fp32), 0.10);
}

INSTANTIATE_TEST_SUITE_P(PostAndPreLayerNorm, Int8ClassifierTest, ::testing::Bool());

// --- The directory format: bert-worker --quantize's library path, then the loader's refusals ---

class Int8FormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BertConfig config = testing::TinyConfig();
    std::vector<std::string> tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (char c = 'a'; c <= 'z'; ++c) tokens.push_back(std::string(1, c));
    for (const char* word : {"the", "cat", "dog", "sat", "ran", "on", "mat", "far"}) tokens.push_back(word);
    Result<std::shared_ptr<const Vocab>> vocab = Vocab::FromTokens(tokens);
    ASSERT_TRUE(vocab.ok());
    config.num_labels = 2;
    BertForSequenceClassification model(config);
    const PretrainedModel hf =
        ToHfClassifier(model, model.parameters().values(), {"neg", "pos"}, **vocab, true, config.max_position_embeddings);
    ASSERT_TRUE(WriteHfDirectory(fp32_dir(), hf).ok());
    testing::WriteText(dir_ / "calibration.jsonl",
                       "{\"text\": \"the cat sat on the mat\"}\n{\"text\": \"the dog ran far\"}\n");
  }
  std::string fp32_dir() const { return dir_ / "fp32"; }
  // Quantizes into OUT (static when `calibrate`).
  QuantizeOutcome Quantize(const std::string& out, bool calibrate) {
    QuantizeOptions options;
    options.model_dir = fp32_dir();
    options.output = out;
    if (calibrate) options.calibration = dir_ / "calibration.jsonl";
    return RunQuantize(options);
  }
  // Rewrites OUT/model.int8.safetensors after `edit` changes its tensors.
  template <typename Edit>
  void EditTensors(const std::string& out, Edit edit) {
    Result<std::vector<NamedTensor>> tensors = ReadSafetensors(out + "/" + kInt8WeightsFile);
    ASSERT_TRUE(tensors.ok()) << tensors.status().message();
    edit(&*tensors);
    ASSERT_TRUE(WriteSafetensors(out + "/" + kInt8WeightsFile, *tensors,
                                 {{"bert_format", "bert-int8"}, {"version", "1"}})
                    .ok());
  }
  template <typename Edit>
  void EditConfig(const std::string& out, Edit edit) {
    nlohmann::json config = nlohmann::json::parse(*ReadFile(out + "/config.json"));
    edit(&config);
    testing::WriteText(out + "/config.json", config.dump());
  }
  // The loader refuses OUT with one line containing every needle.
  void ExpectRefused(const std::string& out, const std::vector<std::string>& needles) {
    Result<Int8Classifier> loaded = LoadInt8Classifier(out);
    ASSERT_FALSE(loaded.ok());
    const std::string& message = loaded.status().message();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    for (const std::string& needle : needles) EXPECT_NE(message.find(needle), std::string::npos) << message;
  }
  // A fresh copy of a quantized directory.
  std::string Fresh(const std::string& name, bool calibrate) {
    const std::string out = dir_ / name;
    const QuantizeOutcome outcome = Quantize(out, calibrate);
    EXPECT_TRUE(outcome.status.ok()) << outcome.status.message();
    return out;
  }

  testing::TempDir dir_;
};

TEST_F(Int8FormatTest, QuantizeWritesTheDocumentedDirectory) {
  const std::string dynamic = Fresh("dynamic", false), fixed = Fresh("static", true);
  EXPECT_FALSE(fs::exists(dynamic + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(dynamic + "/vocab.txt"));
  EXPECT_TRUE(fs::exists(dynamic + "/tokenizer_config.json"));
  for (const auto& entry : fs::directory_iterator(dir_.path())) {  // no partial or old directories are left
    EXPECT_EQ(entry.path().filename().string().find(".partial"), std::string::npos) << entry.path();
  }
  const nlohmann::json config = nlohmann::json::parse(*ReadFile(fixed + "/config.json"));
  EXPECT_EQ(config["quantization"]["format"], "bert-int8");
  EXPECT_EQ(config["quantization"]["version"], 1);
  EXPECT_EQ(config["quantization"]["activations"], "static");
  EXPECT_EQ(config["quantization"]["calibration"]["examples"], 2);
  EXPECT_EQ(config["id2label"]["1"], "pos");
  Result<std::vector<NamedTensor>> tensors = ReadSafetensors(fixed + "/" + kInt8WeightsFile);
  ASSERT_TRUE(tensors.ok());
  std::map<std::string, NamedTensor> by_name;
  for (const NamedTensor& tensor : *tensors) by_name[tensor.name] = tensor;
  const std::string query = "bert.encoder.layer.1.attention.self.query";
  EXPECT_EQ(by_name.at(query + ".weight").dtype, "I8");
  EXPECT_EQ(by_name.at(query + ".weight_scale").shape, std::vector<int64_t>({32}));
  EXPECT_EQ(by_name.at(query + ".bias").dtype, "F32");
  EXPECT_EQ(by_name.at(query + ".input_zero_point").dtype, "U8");
  EXPECT_EQ(by_name.at("classifier.input_scale").shape, std::vector<int64_t>({1}));
  EXPECT_EQ(by_name.at("bert.embeddings.word_embeddings.weight").dtype, "F32");
  EXPECT_EQ(by_name.count("bert.pooler.dense.input_scale"), 1u);
  Result<Int8Classifier> loaded = LoadInt8Classifier(fixed);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->activations, "static");
  EXPECT_EQ(loaded->labels, std::vector<std::string>({"neg", "pos"}));
  ASSERT_TRUE(LoadInt8Classifier(dynamic).ok());
  EXPECT_TRUE(IsInt8ModelDirectory(dynamic));
  EXPECT_FALSE(IsInt8ModelDirectory(fp32_dir()));
}

TEST_F(Int8FormatTest, OutputIsRefusedUnlessOverwriteAndAnInt8ModelIsNotRequantized) {
  const std::string out = Fresh("out", false);
  QuantizeOutcome again = Quantize(out, false);
  EXPECT_EQ(again.exit_code, 2) << again.status.message();
  QuantizeOptions options;
  options.model_dir = fp32_dir();
  options.output = out;
  options.overwrite = true;
  options.calibration = dir_ / "calibration.jsonl";
  ASSERT_TRUE(RunQuantize(options).status.ok());
  EXPECT_EQ(nlohmann::json::parse(*ReadFile(out + "/config.json"))["quantization"]["activations"], "static");
  options.model_dir = out;
  options.output = dir_ / "twice";
  const QuantizeOutcome twice = RunQuantize(options);
  EXPECT_EQ(twice.exit_code, 2);
  EXPECT_NE(twice.status.message().find("already an int8 model"), std::string::npos) << twice.status.message();
  EXPECT_FALSE(fs::exists(dir_ / "twice"));
}

TEST_F(Int8FormatTest, BadCalibrationDataExitsSevenAndWritesNothing) {
  testing::WriteText(dir_ / "bad.jsonl", "{\"text\": \"the cat\"}\n{\"text\": \n");
  QuantizeOptions options;
  options.model_dir = fp32_dir();
  options.output = dir_ / "out";
  options.calibration = dir_ / "bad.jsonl";
  const QuantizeOutcome outcome = RunQuantize(options);
  EXPECT_EQ(outcome.exit_code, 7);
  EXPECT_NE(outcome.status.message().find("bad.jsonl:2"), std::string::npos) << outcome.status.message();
  EXPECT_FALSE(fs::exists(dir_ / "out"));
}

TEST_F(Int8FormatTest, MissingScaleIsNamed) {
  const std::string out = Fresh("out", false);
  const std::string name = "bert.encoder.layer.0.attention.output.dense.weight_scale";
  EditTensors(out, [&](std::vector<NamedTensor>* tensors) {
    tensors->erase(std::remove_if(tensors->begin(), tensors->end(), [&](const NamedTensor& t) { return t.name == name; }),
                   tensors->end());
  });
  ExpectRefused(out, {"model.int8.safetensors", name, "missing"});
}

TEST_F(Int8FormatTest, WeightThatIsNotInt8IsNamed) {
  const std::string out = Fresh("out", false);
  const std::string name = "bert.encoder.layer.1.intermediate.dense.weight";
  EditTensors(out, [&](std::vector<NamedTensor>* tensors) {
    for (NamedTensor& t : *tensors) {
      if (t.name == name) t.dtype = "F32";
    }
  });
  ExpectRefused(out, {"model.int8.safetensors", name, "dtype F32, expected I8"});
}

TEST_F(Int8FormatTest, ScaleOfTheWrongShapeIsNamed) {
  const std::string out = Fresh("out", false);
  const std::string name = "classifier.weight_scale";
  EditTensors(out, [&](std::vector<NamedTensor>* tensors) {
    for (NamedTensor& t : *tensors) {
      if (t.name == name) {
        t.shape = {1};
        t.values.resize(1);
      }
    }
  });
  ExpectRefused(out, {name, "shape [1], expected [2]"});
}

TEST_F(Int8FormatTest, ZeroOrNonFiniteScalesAreNamed) {
  for (float bad : {0.0f, std::nanf(""), std::numeric_limits<float>::infinity(), -1.0f}) {
    const std::string out = Fresh("out-" + std::to_string(static_cast<int>(bad == bad ? bad : 7)), false);
    const std::string name = "bert.pooler.dense.weight_scale";
    EditTensors(out, [&](std::vector<NamedTensor>* tensors) {
      for (NamedTensor& t : *tensors) {
        if (t.name == name) t.values[5] = bad;
      }
    });
    ExpectRefused(out, {name, "element 5", "finite and > 0"});
    fs::remove_all(out);
  }
}

TEST_F(Int8FormatTest, StaticModelWithoutAZeroPointIsNamed) {
  const std::string out = Fresh("out", true);
  const std::string name = "bert.encoder.layer.0.output.dense.input_zero_point";
  EditTensors(out, [&](std::vector<NamedTensor>* tensors) {
    tensors->erase(std::remove_if(tensors->begin(), tensors->end(), [&](const NamedTensor& t) { return t.name == name; }),
                   tensors->end());
  });
  ExpectRefused(out, {name, "missing"});
  // A dynamic config over static tensors: the input scales are unexpected.
  const std::string other = Fresh("other", true);
  EditConfig(other, [](nlohmann::json* config) { (*config)["quantization"]["activations"] = "dynamic"; });
  ExpectRefused(other, {"input_scale", "unexpected tensor"});
}

TEST_F(Int8FormatTest, TruncatedFileIsRefused) {
  const std::string out = Fresh("out", false);
  const std::string path = out + "/" + kInt8WeightsFile;
  fs::resize_file(path, fs::file_size(path) - 100);
  ExpectRefused(out, {path});
  fs::resize_file(path, 5);
  ExpectRefused(out, {path});
}

TEST_F(Int8FormatTest, ConfigWithoutOrWithAnUnknownQuantizationIsRefused) {
  const std::string out = Fresh("out", false);
  EditConfig(out, [](nlohmann::json* config) { config->erase("quantization"); });
  ExpectRefused(out, {out + "/config.json", "quantization: missing"});
  EditConfig(out, [](nlohmann::json* config) { (*config)["quantization"] = {{"format", "gguf"}, {"version", 1}}; });
  ExpectRefused(out, {"config.json", "quantization.format: \"gguf\""});
  EditConfig(out, [](nlohmann::json* config) {
    (*config)["quantization"] = {{"format", "bert-int8"}, {"version", 2}, {"activations", "dynamic"}};
  });
  ExpectRefused(out, {"config.json", "quantization.version: 2 is not supported"});
  EditConfig(out, [](nlohmann::json* config) {
    (*config)["quantization"] = {{"format", "bert-int8"}, {"version", 1}, {"activations", "sometimes"}};
  });
  ExpectRefused(out, {"config.json", "quantization.activations"});
}

TEST_F(Int8FormatTest, WeightOutsideTheSymmetricRangeIsNamed) {
  const std::string out = Fresh("out", false);
  const std::string name = "bert.encoder.layer.0.attention.self.key.weight";
  EditTensors(out, [&](std::vector<NamedTensor>* tensors) {
    for (NamedTensor& t : *tensors) {
      if (t.name == name) t.values[0] = -128;
    }
  });
  ExpectRefused(out, {name, "-128"});
}

}  // namespace
}  // namespace bert
