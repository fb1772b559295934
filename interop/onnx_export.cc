// The ONNX graph of a BERT sequence classifier (interop/onnx_export.h).
// Operator semantics: the ONNX operator spec (onnx/docs/Operators.md) at
// opset 17. The math follows transformers' modeling_bert.py, like
// worker/model/bert_model.cc and tests/reference/hf_bert_ref.py.
#include "interop/onnx_export.h"

#include <glog/logging.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>

#include "common/file_util.h"
#include "interop/int8_model.h"
#include "interop/onnx_subset.pb.h"
#include "interop/pretrained.h"

namespace bert {
namespace {

namespace fs = std::filesystem;

using onnx::AttributeProto;
using onnx::TensorProto;

// Appends nodes and initializers to a GraphProto under unique value names.
class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto* graph) : graph_(graph) {}

  // A fresh value name "<stem>_<n>".
  std::string Fresh(const std::string& stem) { return stem + "_" + std::to_string(next_id_++); }

  // An initializer named `name` (raw little-endian data; x86/ARM hosts are little-endian).
  const std::string& Initializer(const std::string& name, TensorProto::DataType type, const std::vector<int64_t>& dims,
                                 const void* data, size_t bytes) {
    TensorProto* tensor = graph_->add_initializer();
    tensor->set_name(name);
    tensor->set_data_type(type);
    for (int64_t d : dims) tensor->add_dims(d);
    tensor->set_raw_data(data, bytes);
    return tensor->name();
  }
  std::string Floats(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& values) {
    return Initializer(name, TensorProto::FLOAT, dims, values.data(), values.size() * sizeof(float));
  }
  std::string Int64s(const std::string& name, const std::vector<int64_t>& dims, const std::vector<int64_t>& values) {
    return Initializer(name, TensorProto::INT64, dims, values.data(), values.size() * sizeof(int64_t));
  }
  std::string Scalar(const std::string& name, float value) { return Floats(name, {}, {value}); }

  // One node; returns its first output. `outputs` empty: one fresh output named after the op.
  std::string Node(const std::string& op, const std::vector<std::string>& inputs,
                   std::vector<std::string> outputs = {}, const std::vector<AttributeProto>& attributes = {}) {
    if (outputs.empty()) outputs.push_back(Fresh(op));
    onnx::NodeProto* node = graph_->add_node();
    node->set_op_type(op);
    node->set_name(Fresh("node_" + op));
    for (const std::string& input : inputs) node->add_input(input);
    for (const std::string& output : outputs) node->add_output(output);
    for (const AttributeProto& attribute : attributes) *node->add_attribute() = attribute;
    return outputs[0];
  }

 private:
  onnx::GraphProto* graph_;
  int64_t next_id_ = 0;
};

AttributeProto IntAttr(const std::string& name, int64_t value) {
  AttributeProto a;
  a.set_name(name);
  a.set_type(AttributeProto::INT);
  a.set_i(value);
  return a;
}
AttributeProto FloatAttr(const std::string& name, float value) {
  AttributeProto a;
  a.set_name(name);
  a.set_type(AttributeProto::FLOAT);
  a.set_f(value);
  return a;
}
AttributeProto IntsAttr(const std::string& name, const std::vector<int64_t>& values) {
  AttributeProto a;
  a.set_name(name);
  a.set_type(AttributeProto::INTS);
  for (int64_t v : values) a.add_ints(v);
  return a;
}

void AddValueInfo(google::protobuf::RepeatedPtrField<onnx::ValueInfoProto>* list, const std::string& name,
                  TensorProto::DataType type, const std::vector<std::string>& symbolic, int64_t last_dim) {
  onnx::ValueInfoProto* info = list->Add();
  info->set_name(name);
  onnx::TypeProto::Tensor* tensor = info->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(type);
  for (const std::string& dim : symbolic) tensor->mutable_shape()->add_dim()->set_dim_param(dim);
  if (last_dim > 0) tensor->mutable_shape()->add_dim()->set_dim_value(last_dim);
}

// The classifier's weights by name, and the graph being built.
class ClassifierGraph {
 public:
  ClassifierGraph(const OnnxClassifierSource& model, const BertShapes& shapes, onnx::GraphProto* graph)
      : model_(model), shapes_(shapes), g_(graph) {
    for (const NamedTensor& tensor : model.tensors) by_name_[tensor.name] = &tensor;
    eps_ = model.config.value("layer_norm_eps", 1e-12);
    hidden_act_ = model.config.value("hidden_act", std::string("gelu"));
  }

  void Build() {
    const std::string x = Embeddings();
    const std::string mask = AdditiveMask();
    std::string hidden = x;
    for (int64_t i = 0; i < shapes_.num_hidden_layers; ++i) hidden = Layer(i, hidden, mask);
    // Pooler: tanh(dense(hidden[:, 0])): Gather with a scalar index drops the sequence axis.
    const std::string cls = g_.Node("Gather", {hidden, g_.Int64s("cls_index", {}, {0})}, {}, {IntAttr("axis", 1)});
    const int64_t h = shapes_.hidden_size;
    const std::string pooled = g_.Node("Tanh", {Linear("bert.pooler.dense", cls, h, h)});
    const std::string logits = Linear("classifier", pooled, h, shapes_.num_labels, "logits");
    g_.Node("Softmax", {logits}, {"probabilities"}, {IntAttr("axis", -1)});
  }

 private:
  const NamedTensor& Tensor(const std::string& name) const {
    auto it = by_name_.find(name);
    CHECK(it != by_name_.end()) << name << " (checked before the build)";
    return *it->second;
  }
  // The tensor as an fp32 initializer of the same name and shape.
  std::string Weight(const std::string& name) {
    const NamedTensor& tensor = Tensor(name);
    return g_.Floats(name, tensor.shape, tensor.values);
  }

  std::string Embeddings() {
    const std::string words = g_.Node("Gather", {Weight("bert.embeddings.word_embeddings.weight"), "input_ids"});
    const std::string types =
        g_.Node("Gather", {Weight("bert.embeddings.token_type_embeddings.weight"), "token_type_ids"});
    // Absolute positions 0..sequence-1: the first `sequence` rows of the table, broadcast over the batch.
    const std::string sequence =
        g_.Node("Shape", {"input_ids"}, {}, {IntAttr("start", 1), IntAttr("end", 2)});
    const std::string positions = g_.Node("Slice", {Weight("bert.embeddings.position_embeddings.weight"),
                                                     g_.Int64s("slice_start", {1}, {0}), sequence,
                                                     g_.Int64s("slice_axes", {1}, {0})});
    const std::string sum = g_.Node("Add", {g_.Node("Add", {words, positions}), types});
    return LayerNorm("bert.embeddings.LayerNorm", sum);
  }

  // HF's get_extended_attention_mask: (1 - mask) * finfo(float32).min, as [batch, 1, 1, sequence].
  std::string AdditiveMask() {
    const std::string mask = g_.Node("Cast", {"attention_mask"}, {}, {IntAttr("to", TensorProto::FLOAT)});
    const std::string expanded = g_.Node("Unsqueeze", {mask, g_.Int64s("mask_axes", {2}, {1, 2})});
    const std::string inverted = g_.Node("Sub", {g_.Scalar("one", 1.0f), expanded});
    return g_.Node("Mul", {inverted, g_.Scalar("float_min", std::numeric_limits<float>::lowest())});
  }

  std::string LayerNorm(const std::string& prefix, const std::string& x) {
    return g_.Node("LayerNormalization", {x, Weight(prefix + ".weight"), Weight(prefix + ".bias")}, {},
                   {IntAttr("axis", -1), FloatAttr("epsilon", static_cast<float>(eps_))});
  }

  std::string Layer(int64_t index, const std::string& x, const std::string& mask) {
    const std::string p = "bert.encoder.layer." + std::to_string(index) + ".";
    const int64_t h = shapes_.hidden_size, heads = shapes_.num_attention_heads, head_dim = h / heads;
    const std::string split_shape = g_.Int64s(g_.Fresh("heads_shape"), {4}, {0, 0, heads, head_dim});
    auto heads_of = [&](const std::string& linear, const std::vector<int64_t>& perm) {
      return g_.Node("Transpose", {g_.Node("Reshape", {linear, split_shape})}, {}, {IntsAttr("perm", perm)});
    };
    const std::string q = heads_of(Linear(p + "attention.self.query", x, h, h), {0, 2, 1, 3});    // [B, n, S, d]
    const std::string k_t = heads_of(Linear(p + "attention.self.key", x, h, h), {0, 2, 3, 1});    // [B, n, d, S]
    const std::string v = heads_of(Linear(p + "attention.self.value", x, h, h), {0, 2, 1, 3});    // [B, n, S, d]
    const std::string scores = g_.Node(
        "Div", {g_.Node("MatMul", {q, k_t}), g_.Scalar(g_.Fresh("sqrt_head_dim"), std::sqrt(float(head_dim)))});
    const std::string probs = g_.Node("Softmax", {g_.Node("Add", {scores, mask})}, {}, {IntAttr("axis", -1)});
    const std::string context = g_.Node(
        "Reshape", {g_.Node("Transpose", {g_.Node("MatMul", {probs, v})}, {}, {IntsAttr("perm", {0, 2, 1, 3})}),
                    g_.Int64s(g_.Fresh("merge_shape"), {3}, {0, 0, h})});
    const std::string attention = LayerNorm(
        p + "attention.output.LayerNorm", g_.Node("Add", {Linear(p + "attention.output.dense", context, h, h), x}));
    const std::string intermediate =
        Activation(Linear(p + "intermediate.dense", attention, h, shapes_.intermediate_size));
    const std::string output = Linear(p + "output.dense", intermediate, shapes_.intermediate_size, h);
    return LayerNorm(p + "output.LayerNorm", g_.Node("Add", {output, attention}));
  }

  std::string Activation(const std::string& x) {
    if (hidden_act_ == "relu") return g_.Node("Relu", {x});
    if (hidden_act_ == "gelu") {  // 0.5 x (1 + erf(x / sqrt 2))
      const std::string erf = g_.Node("Erf", {g_.Node("Div", {x, g_.Scalar(g_.Fresh("sqrt2"), std::sqrt(2.0f))})});
      return g_.Node("Mul", {g_.Node("Mul", {x, g_.Node("Add", {erf, g_.Scalar(g_.Fresh("one"), 1.0f)})}),
                             g_.Scalar(g_.Fresh("half"), 0.5f)});
    }
    // gelu_new / gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    const std::string cube = g_.Node("Mul", {g_.Node("Mul", {x, x}), x});
    const std::string inner = g_.Node("Add", {x, g_.Node("Mul", {cube, g_.Scalar(g_.Fresh("c"), 0.044715f)})});
    const std::string tanh = g_.Node(
        "Tanh", {g_.Node("Mul", {inner, g_.Scalar(g_.Fresh("sqrt_2_over_pi"), std::sqrt(2.0f / float(M_PI)))})});
    return g_.Node("Mul", {g_.Node("Mul", {x, g_.Node("Add", {tanh, g_.Scalar(g_.Fresh("one"), 1.0f)})}),
                           g_.Scalar(g_.Fresh("half"), 0.5f)});
  }

  // y = x W^T + b for nn.Linear's W [out, in]; `output` names the result ("" = fresh).
  std::string Linear(const std::string& prefix, const std::string& x, int64_t in, int64_t out,
                     const std::string& output = "") {
    const NamedTensor& weight = Tensor(prefix + ".weight");
    const bool int8 = model_.quantization != LinearQuantization::kNone;
    // W^T, [in, out] row-major: what MatMul / MatMulInteger take as B.
    std::vector<float> transposed(static_cast<size_t>(in * out));
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t i = 0; i < in; ++i) transposed[i * out + o] = weight.values[o * in + i];
    }
    std::vector<std::string> outputs;
    if (!output.empty()) outputs.push_back(output);
    const std::string bias = Weight(prefix + ".bias");
    if (!int8) {
      const std::string w_t = g_.Floats(prefix + ".weight_t", {in, out}, transposed);
      return g_.Node("Add", {g_.Node("MatMul", {x, w_t}), bias}, outputs);
    }
    std::vector<int8_t> quantized(transposed.size());
    for (size_t i = 0; i < transposed.size(); ++i) quantized[i] = static_cast<int8_t>(transposed[i]);
    const std::string w_t = g_.Initializer(prefix + ".weight_t", TensorProto::INT8, {in, out}, quantized.data(),
                                           quantized.size());
    const int8_t zero = 0;
    const std::string w_zero = g_.Initializer(prefix + ".weight_zero_point", TensorProto::INT8, {}, &zero, 1);
    std::string x_q, x_scale, x_zero;
    if (model_.quantization == LinearQuantization::kInt8Dynamic) {
      x_q = g_.Fresh(prefix + ".x_q");
      x_scale = g_.Fresh(prefix + ".x_scale");
      x_zero = g_.Fresh(prefix + ".x_zero_point");
      g_.Node("DynamicQuantizeLinear", {x}, {x_q, x_scale, x_zero});
    } else {
      // Scalars (not [1]): per-tensor quantization.
      x_scale = g_.Floats(prefix + ".input_scale", {}, Tensor(prefix + ".input_scale").values);
      const uint8_t zero_point = static_cast<uint8_t>(Tensor(prefix + ".input_zero_point").values[0]);
      x_zero = g_.Initializer(prefix + ".input_zero_point", TensorProto::UINT8, {}, &zero_point, 1);
      x_q = g_.Node("QuantizeLinear", {x, x_scale, x_zero});
    }
    const std::string product = g_.Node("MatMulInteger", {x_q, w_t, x_zero, w_zero});
    const std::string as_float = g_.Node("Cast", {product}, {}, {IntAttr("to", TensorProto::FLOAT)});
    const std::string scale = g_.Node("Mul", {x_scale, Weight(prefix + ".weight_scale")});
    return g_.Node("Add", {g_.Node("Mul", {as_float, scale}), bias}, outputs);
  }

  const OnnxClassifierSource& model_;
  const BertShapes shapes_;
  GraphBuilder g_;
  std::map<std::string, const NamedTensor*> by_name_;
  double eps_ = 1e-12;
  std::string hidden_act_;
};

// What the graph needs of the config and tensors (see BuildOnnxClassifier).
Result<BertShapes> CheckExportable(const OnnxClassifierSource& model, const std::string& source) {
  Result<BertShapes> parsed = BertShapesFromConfig(model.config, source);
  if (!parsed.ok()) return parsed.status();
  const BertShapes shapes = *parsed;
  if (shapes.pre_layer_norm || model.config.value("pre_layer_norm", false) == true) {
    return Status::InvalidArgument(source + ": a pre-LayerNorm model (\"pre_layer_norm\": true) is not exported "
                                            "to ONNX (the graph is HF's post-LN BERT)");
  }
  if (!shapes.pruned_heads.empty()) {  // the graph has num_attention_heads in every layer
    return Status::InvalidArgument(source + ": has pruned heads (config.json pruned_heads); export the fp32 "
                                            "pruned model, whose removed heads bertctl export puts back as zeros");
  }
  const nlohmann::json position_type = model.config.value("position_embedding_type", nlohmann::json("absolute"));
  if (position_type != "absolute") {
    return Status::InvalidArgument(source + ": position_embedding_type " + position_type.dump() +
                                   " is not supported (only \"absolute\")");
  }
  const nlohmann::json act = model.config.value("hidden_act", nlohmann::json("gelu"));
  if (act != "gelu" && act != "gelu_new" && act != "gelu_pytorch_tanh" && act != "relu") {
    return Status::InvalidArgument(source + ": hidden_act " + act.dump() +
                                   " is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)");
  }
  bool has_classifier = false;
  for (const NamedTensor& tensor : model.tensors) has_classifier |= tensor.name == "classifier.weight";
  if (!has_classifier) {
    return Status::InvalidArgument(source + ": no classifier.weight: only a fine-tuned "
                                            "BertForSequenceClassification exports to ONNX (fine-tune it first)");
  }
  if (model.quantization == LinearQuantization::kNone) {
    BERT_RETURN_IF_ERROR(CheckTensorsAgainstConfig(model.config, model.tensors, source));
  } else {
    BERT_RETURN_IF_ERROR(CheckInt8Tensors(model.config, model.tensors, model.quantization, source));
  }
  // The classifier's forward needs every encoder tensor (checked above) and the pooler.
  bool has_pooler = false;
  for (const NamedTensor& tensor : model.tensors) has_pooler |= tensor.name == "bert.pooler.dense.weight";
  if (!has_pooler) {
    return Status::InvalidArgument(source + ": no bert.pooler.dense.weight (the classifier reads the pooled [CLS])");
  }
  return shapes;
}

}  // namespace

Result<std::string> BuildOnnxClassifier(const OnnxClassifierSource& model, const std::string& source,
                                        OnnxModelStats* stats) {
  Result<BertShapes> checked = CheckExportable(model, source);
  if (!checked.ok()) return checked.status();
  const BertShapes shapes = *checked;
  onnx::ModelProto proto;
  proto.set_ir_version(kOnnxIrVersion);
  proto.set_producer_name("bertctl");
  proto.set_producer_version("1");
  proto.set_model_version(1);
  proto.set_doc_string("BertForSequenceClassification exported by bertctl export --format onnx");
  onnx::OperatorSetIdProto* opset = proto.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);
  auto add_metadata = [&](const std::string& key, const std::string& value) {
    onnx::StringStringEntryProto* entry = proto.add_metadata_props();
    entry->set_key(key);
    entry->set_value(value);
  };
  if (model.config.contains("id2label")) add_metadata("id2label", model.config["id2label"].dump());
  add_metadata("quantization", model.quantization == LinearQuantization::kNone          ? "none"
                               : model.quantization == LinearQuantization::kInt8Dynamic ? "int8 dynamic"
                                                                                        : "int8 static");
  onnx::GraphProto* graph = proto.mutable_graph();
  graph->set_name("bert_sequence_classification");
  for (const char* input : {"input_ids", "attention_mask", "token_type_ids"}) {
    AddValueInfo(graph->mutable_input(), input, TensorProto::INT64, {"batch", "sequence"}, 0);
  }
  for (const char* output : {"logits", "probabilities"}) {
    AddValueInfo(graph->mutable_output(), output, TensorProto::FLOAT, {"batch"}, shapes.num_labels);
  }
  ClassifierGraph(model, shapes, graph).Build();
  const size_t bytes = proto.ByteSizeLong();
  if (bytes > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return Status::InvalidArgument(source + ": the ONNX model would be " + std::to_string(bytes) +
                                   " bytes, over protobuf's 2 GiB limit (external data is not written)");
  }
  std::string serialized;
  CHECK(proto.SerializeToString(&serialized));
  if (stats != nullptr) {
    stats->num_nodes = graph->node_size();
    stats->num_initializers = graph->initializer_size();
    stats->bytes = serialized.size();
  }
  return serialized;
}

Status WriteOnnxDirectory(const std::string& dir, const std::string& model_bytes, const std::string& source_dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IoError(dir + ": cannot create the directory: " + ec.message());
  BERT_RETURN_IF_ERROR(WriteFileAtomic(dir + "/" + kOnnxModelFile, model_bytes));
  // config.json last: its presence marks a finished export.
  for (const char* name : {"vocab.txt", "tokenizer_config.json", "config.json"}) {
    const std::string from = source_dir + "/" + name;
    if (!fs::exists(from, ec)) {
      if (std::string(name) == "tokenizer_config.json") continue;  // optional in HF directories
      return Status::NotFound(from + ": missing");
    }
    Result<std::string> contents = ReadFile(from);
    if (!contents.ok()) return contents.status();
    BERT_RETURN_IF_ERROR(WriteFileAtomic(dir + "/" + name, *contents));
  }
  return Status::Ok();
}

}  // namespace bert
