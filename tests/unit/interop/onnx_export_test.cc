// interop/onnx_export.h and interop/int8_model.h: the graph's contract
// (inputs, outputs, symbolic axes, opset, which ops an int8 model uses),
// read back with our ONNX schema subset, and every refusal a user can meet:
// models the graph cannot express and int8 directories that break the format.
// That onnxruntime runs the graph and agrees with predict is
// tests/integration/worker/onnx_runtime_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>

#include "interop/int8_model.h"
#include "interop/onnx_export.h"
#include "interop/onnx_subset.pb.h"
#include "test_util.h"
#include "unit/interop/tiny_classifier.h"

namespace bert {
namespace {

using testing::TempDir;

OnnxClassifierSource TinySource(LinearQuantization quantization = LinearQuantization::kNone) {
  OnnxClassifierSource source;
  source.config = testing::TinyClassifierConfig();
  source.tensors = quantization == LinearQuantization::kNone ? testing::TinyClassifierTensors()
                                                             : testing::TinyInt8Tensors(quantization);
  source.quantization = quantization;
  return source;
}

onnx::ModelProto Parse(const std::string& bytes) {
  onnx::ModelProto model;
  EXPECT_TRUE(model.ParseFromString(bytes));
  return model;
}

template <typename Predicate>
void Drop(std::vector<NamedTensor>& tensors, Predicate predicate) {
  tensors.erase(std::remove_if(tensors.begin(), tensors.end(), predicate), tensors.end());
}

std::map<std::string, int> OpCounts(const onnx::ModelProto& model) {
  std::map<std::string, int> counts;
  for (const onnx::NodeProto& node : model.graph().node()) ++counts[node.op_type()];
  return counts;
}

// The refusal of `source`, which must name `needle`.
void ExpectRefused(const OnnxClassifierSource& source, const std::string& needle) {
  Result<std::string> bytes = BuildOnnxClassifier(source, "tiny");
  ASSERT_FALSE(bytes.ok()) << needle;
  EXPECT_EQ(bytes.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(bytes.status().message().find(needle), std::string::npos) << bytes.status().message();
  EXPECT_EQ(bytes.status().message().find('\n'), std::string::npos) << "one line";
}

TEST(OnnxExport, DeclaresDynamicBatchAndSequenceAxesAndTheOutputs) {
  OnnxModelStats stats;
  Result<std::string> bytes = BuildOnnxClassifier(TinySource(), "tiny", &stats);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  const onnx::ModelProto model = Parse(*bytes);
  EXPECT_EQ(model.ir_version(), 8);
  ASSERT_EQ(model.opset_import_size(), 1);
  EXPECT_EQ(model.opset_import(0).domain(), "");
  EXPECT_EQ(model.opset_import(0).version(), 17);
  ASSERT_EQ(model.graph().input_size(), 3);
  const char* inputs[] = {"input_ids", "attention_mask", "token_type_ids"};
  for (int i = 0; i < 3; ++i) {
    const onnx::ValueInfoProto& input = model.graph().input(i);
    EXPECT_EQ(input.name(), inputs[i]);
    EXPECT_EQ(input.type().tensor_type().elem_type(), onnx::TensorProto::INT64);
    const onnx::TensorShapeProto& shape = input.type().tensor_type().shape();
    ASSERT_EQ(shape.dim_size(), 2);
    EXPECT_EQ(shape.dim(0).dim_param(), "batch");
    EXPECT_EQ(shape.dim(1).dim_param(), "sequence");
  }
  ASSERT_EQ(model.graph().output_size(), 2);
  for (int i = 0; i < 2; ++i) {
    const onnx::ValueInfoProto& output = model.graph().output(i);
    EXPECT_EQ(output.name(), i == 0 ? "logits" : "probabilities");
    EXPECT_EQ(output.type().tensor_type().elem_type(), onnx::TensorProto::FLOAT);
    EXPECT_EQ(output.type().tensor_type().shape().dim(0).dim_param(), "batch");
    EXPECT_EQ(output.type().tensor_type().shape().dim(1).dim_value(), 3);
  }
  const std::map<std::string, int> ops = OpCounts(model);
  EXPECT_EQ(ops.at("LayerNormalization"), 1 + 2 * 2);  // embeddings + 2 per layer
  EXPECT_EQ(ops.at("Erf"), 2);                         // "gelu" is the erf form
  EXPECT_EQ(ops.at("MatMul"), 2 * (6 + 2) + 2);        // 6 Linears + 2 attention products per layer; pooler, classifier
  EXPECT_EQ(ops.count("MatMulInteger"), 0u);
  EXPECT_EQ(stats.num_nodes, model.graph().node_size());
  EXPECT_EQ(stats.bytes, bytes->size());
  // Weights keep their values: the classifier's W^T as raw little-endian floats.
  for (const onnx::TensorProto& tensor : model.graph().initializer()) {
    if (tensor.name() != "classifier.weight_t") continue;
    ASSERT_EQ(tensor.raw_data().size(), 8u * 3u * sizeof(float));
    float w_t_01 = 0;
    std::memcpy(&w_t_01, tensor.raw_data().data() + sizeof(float), sizeof(float));  // [in 0][out 1] = W[1][0]
    for (const NamedTensor& t : testing::TinyClassifierTensors()) {
      if (t.name == "classifier.weight") {
        EXPECT_EQ(w_t_01, t.values[1 * 8 + 0]);
      }
    }
  }
}

TEST(OnnxExport, Int8UsesIntegerOpsPerLinear) {
  const int linears = 2 * 6 + 2;
  for (LinearQuantization q : {LinearQuantization::kInt8Dynamic, LinearQuantization::kInt8Static}) {
    Result<std::string> bytes = BuildOnnxClassifier(TinySource(q), "tiny");
    ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
    const std::map<std::string, int> ops = OpCounts(Parse(*bytes));
    EXPECT_EQ(ops.at("MatMulInteger"), linears);
    EXPECT_EQ(ops.at("MatMul"), 2 * 2);  // only the attention products stay fp32
    const bool dynamic = q == LinearQuantization::kInt8Dynamic;
    EXPECT_EQ(ops.count("DynamicQuantizeLinear") ? ops.at("DynamicQuantizeLinear") : 0, dynamic ? linears : 0);
    EXPECT_EQ(ops.count("QuantizeLinear") ? ops.at("QuantizeLinear") : 0, dynamic ? 0 : linears);
  }
}

TEST(OnnxExport, RefusesModelsTheGraphCannotExpress) {
  OnnxClassifierSource source = TinySource();
  Drop(source.tensors, [](const NamedTensor& t) { return t.name.rfind("classifier.", 0) == 0; });
  ExpectRefused(source, "no classifier.weight: only a fine-tuned BertForSequenceClassification");

  source = TinySource();
  source.config["pre_layer_norm"] = true;
  ExpectRefused(source, "pre-LayerNorm");

  source = TinySource();
  source.config["position_embedding_type"] = "relative_key";
  ExpectRefused(source, "position_embedding_type \"relative_key\" is not supported");

  source = TinySource();
  source.config["hidden_act"] = "swish";
  ExpectRefused(source, "hidden_act \"swish\" is not supported");

  source = TinySource();
  Drop(source.tensors, [](const NamedTensor& t) { return t.name == "bert.encoder.layer.1.attention.self.key.weight"; });
  ExpectRefused(source, "\"bert.encoder.layer.1.attention.self.key.weight\" is missing");

  source = TinySource();
  for (NamedTensor& t : source.tensors) {
    if (t.name == "bert.pooler.dense.bias") t.shape = {4}, t.values.resize(4);
  }
  ExpectRefused(source, "\"bert.pooler.dense.bias\" has shape [4]");

  source = TinySource();
  Drop(source.tensors, [](const NamedTensor& t) { return t.name.rfind("bert.pooler.", 0) == 0; });
  ExpectRefused(source, "no bert.pooler.dense.weight");
}

// The tiny int8 model of `quantization` with `edit` applied to the tensor `name`
// (or, with no edit, that tensor dropped).
OnnxClassifierSource Int8With(LinearQuantization quantization, const std::string& name,
                              const std::function<void(NamedTensor&)>& edit = nullptr) {
  OnnxClassifierSource source = TinySource(quantization);
  if (!edit) Drop(source.tensors, [&](const NamedTensor& t) { return t.name == name; });
  for (NamedTensor& tensor : source.tensors) {
    if (edit && tensor.name == name) edit(tensor);
  }
  return source;
}

TEST(OnnxExport, RefusesInt8TensorsThatBreakTheFormat) {
  const LinearQuantization dynamic = LinearQuantization::kInt8Dynamic, fixed = LinearQuantization::kInt8Static;
  auto dtype = [](const char* d) { return [d](NamedTensor& t) { t.dtype = d; }; };
  ExpectRefused(Int8With(dynamic, "classifier.weight_scale"), "\"classifier.weight_scale\" is missing (dynamic int8)");
  ExpectRefused(Int8With(dynamic, "classifier.weight", dtype("F32")),
                "\"classifier.weight\" is F32, the int8 format stores it as I8");
  ExpectRefused(Int8With(dynamic, "bert.embeddings.LayerNorm.weight", dtype("I8")),
                "\"bert.embeddings.LayerNorm.weight\" is I8, the int8 format stores it as F32");
  ExpectRefused(Int8With(dynamic, "bert.pooler.dense.weight_scale", [](NamedTensor& t) { t.shape = {8, 1}; }),
                "\"bert.pooler.dense.weight_scale\" has shape [8, 1], expected [8]");
  ExpectRefused(Int8With(dynamic, "classifier.weight_scale", [](NamedTensor& t) { t.values[1] = -1; }),
                "\"classifier.weight_scale\" holds -1");
  ExpectRefused(Int8With(fixed, "classifier.input_zero_point"),
                "\"classifier.input_zero_point\" is missing (static int8)");
  ExpectRefused(Int8With(fixed, "classifier.input_scale", [](NamedTensor& t) { t.values[0] = 0; }),
                "\"classifier.input_scale\" holds 0");
  ExpectRefused(Int8With(fixed, "classifier.input_zero_point", dtype("I8")),
                "\"classifier.input_zero_point\" is I8, the int8 format stores it as U8");
  // Static tensors in a dynamic model are not silently ignored.
  OnnxClassifierSource extra = TinySource(fixed);
  extra.quantization = dynamic;
  ExpectRefused(extra, "is not part of the dynamic int8 format");
}

TEST(Int8Directory, LoadsAndRefusesBadQuantizationBlocksNamingFileAndKey) {
  TempDir dir;
  const std::string good = dir / "int8";
  const LinearQuantization fixed = LinearQuantization::kInt8Static;
  testing::WriteTinyInt8Dir(good, fixed, testing::TinyInt8Tensors(fixed));
  EXPECT_TRUE(LooksLikeInt8Directory(good));
  Result<OnnxClassifierSource> loaded = LoadInt8Directory(good);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->quantization, LinearQuantization::kInt8Static);
  EXPECT_TRUE(BuildOnnxClassifier(*loaded, good).ok());

  const std::string original = *ReadFile(good + "/config.json");
  auto refused_with = [&](const std::string& key, const nlohmann::json& value, const std::string& needle) {
    nlohmann::json config = nlohmann::json::parse(original);
    config["quantization"][key] = value;
    ASSERT_TRUE(WriteFileAtomic(good + "/config.json", config.dump()).ok());
    Result<OnnxClassifierSource> bad = LoadInt8Directory(good);
    ASSERT_FALSE(bad.ok()) << key;
    EXPECT_NE(bad.status().message().find(good + "/config.json: " + needle), std::string::npos)
        << bad.status().message();
  };
  refused_with("format", "gptq", "quantization.format is \"gptq\", expected \"bert-int8\"");
  refused_with("version", 2, "quantization.version is 2, this bertctl reads version 1");
  refused_with("activations", "per-token", "quantization.activations is \"per-token\"");
  refused_with("weights", "int4", "quantization.weights is \"int4\"");
}

TEST(Int8Directory, RefusesWrongMetadataAndNamesTheSafetensorsFileForTensors) {
  TempDir dir;
  const std::string int8 = dir / "int8";
  const LinearQuantization dynamic = LinearQuantization::kInt8Dynamic;
  testing::WriteTinyInt8Dir(int8, dynamic, testing::TinyInt8Tensors(dynamic));
  ASSERT_TRUE(WriteSafetensors(int8 + "/model.int8.safetensors", testing::TinyInt8Tensors(dynamic),
                               {{"bert_format", "bert-int4"}, {"version", "1"}})
                  .ok());
  Result<OnnxClassifierSource> bad = LoadInt8Directory(int8);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(int8 + "/model.int8.safetensors: __metadata__ bert_format bert-int4"),
            std::string::npos)
      << bad.status().message();

  std::vector<NamedTensor> tensors = testing::TinyInt8Tensors(dynamic);
  Drop(tensors, [](const NamedTensor& t) { return t.name == "bert.encoder.layer.0.output.dense.weight_scale"; });
  testing::WriteTinyInt8Dir(int8, dynamic, tensors);
  bad = LoadInt8Directory(int8);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(int8 + "/model.int8.safetensors: tensor "
                                                "\"bert.encoder.layer.0.output.dense.weight_scale\" is missing"),
            std::string::npos)
      << bad.status().message();

  std::filesystem::remove(int8 + "/model.int8.safetensors");
  bad = LoadInt8Directory(int8);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(int8 + "/model.int8.safetensors: missing"), std::string::npos);
}

TEST(OnnxDirectory, WritesTheModelAndCopiesTheDescribingFiles) {
  TempDir dir;
  const std::string source = dir / "int8";
  const LinearQuantization dynamic = LinearQuantization::kInt8Dynamic;
  testing::WriteTinyInt8Dir(source, dynamic, testing::TinyInt8Tensors(dynamic));
  const std::string out = dir / "onnx";
  ASSERT_TRUE(WriteOnnxDirectory(out, "model bytes", source).ok());
  EXPECT_EQ(*ReadFile(out + "/model.onnx"), "model bytes");
  for (const char* name : {"config.json", "vocab.txt", "tokenizer_config.json"}) {
    EXPECT_EQ(*ReadFile(out + "/" + name), *ReadFile(source + "/" + name)) << name;
  }
  for (const auto& entry : std::filesystem::directory_iterator(out)) {
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << entry.path();
  }
}

}  // namespace
}  // namespace bert
