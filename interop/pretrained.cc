// LoadPretrained and WriteHfDirectory (interop/pretrained.h).
#include "interop/pretrained.h"

#include <glog/logging.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "checkpoint/checkpoint.h"
#include "checkpoint/checkpoint_internal.h"
#include "common/file_util.h"
#include "common/run_config.h"
#include "datapipe/corpus_store.h"
#include "datapipe/vocab.h"

namespace bert {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

bool IsDirectory(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}
bool IsFile(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

Result<json> ReadJsonFile(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  json parsed = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Status::InvalidArgument(path + ": not valid JSON");
  if (!parsed.is_object()) return Status::InvalidArgument(path + ": expected a JSON object");
  return parsed;
}

std::string ArchitectureOf(const std::vector<NamedTensor>& tensors) {
  std::set<std::string> heads;
  for (const NamedTensor& tensor : tensors) heads.insert(tensor.name.substr(0, tensor.name.find('.')));
  if (heads.count("classifier")) return "BertForSequenceClassification";
  bool nsp = false, mlm = false;
  for (const NamedTensor& tensor : tensors) {
    nsp = nsp || tensor.name.rfind("cls.seq_relationship.", 0) == 0;
    mlm = mlm || tensor.name.rfind("cls.predictions.", 0) == 0;
  }
  if (nsp && mlm) return "BertForPreTraining";
  if (mlm) return "BertForMaskedLM";
  return "BertModel";
}

// --- Our checkpoints ---

// A checkpoint directory: manifest.json validated; with `verify`, every
// shard's size, header and xxh3 too (as CheckpointStore::LoadLatest does).
Result<LoadedCheckpoint> OpenCheckpointDir(const std::string& dir, bool verify) {
  const std::string manifest_path = dir + "/manifest.json";
  Result<json> manifest_json = ReadJsonFile(manifest_path);
  if (!manifest_json.ok()) return manifest_json.status();
  Result<Manifest> manifest = Manifest::FromJson(*manifest_json, manifest_path);
  if (!manifest.ok()) return manifest.status();
  if (verify) {
    for (const ShardInfo& shard : manifest->shards) {
      BERT_RETURN_IF_ERROR(checkpoint_internal::VerifyShard(dir + "/" + shard.file, *manifest, shard));
    }
  }
  return LoadedCheckpoint{dir, std::move(manifest).value()};
}

// The run config frozen in the manifest; relative paths (there should be
// none: the frozen config is resolved) against the run directory.
Result<RunConfig> ManifestRunConfig(const LoadedCheckpoint& checkpoint) {
  const std::string where = checkpoint.dir + "/manifest.json: config_yaml";
  if (checkpoint.manifest.config_yaml.empty()) return Status::InvalidArgument(where + ": empty");
  const std::string run_dir = fs::path(checkpoint.dir).parent_path().parent_path().string();
  return ParseRunConfig(checkpoint.manifest.config_yaml, where, run_dir.empty() ? "." : run_dir);
}

// The model config: the manifest's model_config, or (older checkpoints)
// the config.json that the run config's `model` names.
Result<json> CheckpointModelConfig(const LoadedCheckpoint& checkpoint, const RunConfig& run) {
  if (checkpoint.manifest.model_config.is_object()) return checkpoint.manifest.model_config;
  Result<json> config = ReadJsonFile(run.model);
  if (!config.ok()) {
    return Status::InvalidArgument(checkpoint.dir + "/manifest.json: no model_config, and the run's model: " +
                                   config.status().message());
  }
  return config;
}

// The run's vocabulary (its `vocab:` file, else the corpus's), checked
// against the manifest's checksum.
Result<std::shared_ptr<const Vocab>> CheckpointVocab(const LoadedCheckpoint& checkpoint, const RunConfig& run) {
  std::string source;
  Result<std::shared_ptr<const Vocab>> vocab = Status::NotFound("");
  if (!run.vocab.empty()) {
    source = run.vocab;
    vocab = Vocab::Load(run.vocab);
  } else if (!run.data.db.empty()) {
    source = run.data.db.front();
    Result<std::unique_ptr<CorpusDb>> corpus = CorpusDb::OpenReadOnly(source);
    vocab = corpus.ok() ? (*corpus)->LoadVocab() : Result<std::shared_ptr<const Vocab>>(corpus.status());
  } else {
    return Status::InvalidArgument(checkpoint.dir +
                                   "/manifest.json: config_yaml names neither vocab nor data.db: no vocabulary");
  }
  if (!vocab.ok()) {
    return Status::InvalidArgument(checkpoint.dir + "/manifest.json: the run's vocabulary: " +
                                   vocab.status().message());
  }
  const std::string& expected = checkpoint.manifest.vocab_checksum;
  if (!expected.empty() && (*vocab)->checksum() != expected) {
    return Status::InvalidArgument(checkpoint.dir + "/manifest.json: vocab_checksum " + expected + " but " + source +
                                   " has checksum " + (*vocab)->checksum() + " (another vocabulary)");
  }
  return vocab;
}

Result<PretrainedModel> LoadCheckpoint(const LoadedCheckpoint& checkpoint, bool with_weights) {
  Result<RunConfig> run = ManifestRunConfig(checkpoint);
  if (!run.ok()) return run.status();
  Result<json> config = CheckpointModelConfig(checkpoint, *run);
  if (!config.ok()) return config.status();
  Result<std::shared_ptr<const Vocab>> vocab = CheckpointVocab(checkpoint, *run);
  if (!vocab.ok()) return vocab.status();

  PretrainedModel model;
  model.source = PretrainedModel::Source::kCheckpoint;
  model.path = checkpoint.dir;
  model.config = *config;
  model.vocab = (*vocab)->tokens();
  model.vocab_checksum = (*vocab)->checksum();
  model.do_lower_case = run->lower_case;
  const std::string where = checkpoint.dir + "/manifest.json";
  for (const TensorLayout& layout : checkpoint.manifest.layout) {
    model.tensors.push_back(NamedTensor{layout.name, layout.shape, {}});
  }
  BERT_RETURN_IF_ERROR(CheckTensorsAgainstConfig(model.config, model.tensors, where + ": layout"));
  Result<BertShapes> shapes = BertShapesFromConfig(model.config, where + ": model config");
  if (!shapes.ok()) return shapes.status();
  if (static_cast<int64_t>(model.vocab.size()) > shapes->vocab_size) {
    return Status::InvalidArgument(where + ": the vocabulary has " + std::to_string(model.vocab.size()) +
                                   " tokens but the model's vocab_size is " + std::to_string(shapes->vocab_size));
  }
  model.model_max_length = shapes->max_position_embeddings;
  model.config["model_type"] = shapes->pre_layer_norm ? kPreLnModelType : "bert";
  model.config["architectures"] = {ArchitectureOf(model.tensors)};
  if (!with_weights) {
    model.tensors.clear();
    return model;
  }
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    const TensorLayout& layout = checkpoint.manifest.layout[i];
    uint64_t numel = 1;
    for (int64_t dim : layout.shape) numel *= static_cast<uint64_t>(dim);
    model.tensors[i].values.resize(numel);
    BERT_RETURN_IF_ERROR(
        ReadRange(checkpoint, "params", layout.offset, layout.offset + numel, model.tensors[i].values.data()));
  }
  return model;
}

// --- HF directories ---

// The safetensors files of an HF directory: model.safetensors, or the
// shards a model.safetensors.index.json lists.
Result<std::vector<std::string>> WeightFiles(const std::string& dir) {
  if (IsFile(dir + "/model.safetensors")) return std::vector<std::string>{dir + "/model.safetensors"};
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (IsFile(index_path)) {
    Result<json> index = ReadJsonFile(index_path);
    if (!index.ok()) return index.status();
    auto map = index->find("weight_map");
    if (map == index->end() || !map->is_object()) return Status::InvalidArgument(index_path + ": weight_map: missing");
    std::set<std::string> files;
    for (const auto& [name, file] : map->items()) {
      if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos) {
        return Status::InvalidArgument(index_path + ": weight_map." + name + ": expected a file name");
      }
      files.insert(dir + "/" + file.get<std::string>());
    }
    return std::vector<std::string>(files.begin(), files.end());
  }
  if (IsFile(dir + "/pytorch_model.bin")) {
    return Status::InvalidArgument(dir + ": only pytorch_model.bin (a pickle, not read here); save the model with "
                                         "safe_serialization=True to get model.safetensors");
  }
  return Status::InvalidArgument(dir + ": no model.safetensors");
}

// Reads the weights (or with !with_weights only the headers) under our names.
Result<std::vector<NamedTensor>> ReadHfTensors(const std::string& dir, bool with_weights) {
  Result<std::vector<std::string>> files = WeightFiles(dir);
  if (!files.ok()) return files.status();
  std::vector<NamedTensor> tensors;
  for (const std::string& file : *files) {
    std::vector<NamedTensor> headers_only;
    auto keep = [&](const SafetensorsEntry& entry) {
      if (NormalizeHfTensorName(entry.name).empty()) return false;
      if (!with_weights) headers_only.push_back(NamedTensor{entry.name, entry.shape, {}});
      return with_weights;
    };
    Result<std::vector<NamedTensor>> read = ReadSafetensors(file, keep);
    if (!read.ok()) return read.status();
    for (NamedTensor& tensor : with_weights ? *read : headers_only) {
      tensor.name = NormalizeHfTensorName(tensor.name);
      tensors.push_back(std::move(tensor));
    }
  }
  return tensors;
}

Result<PretrainedModel> LoadHfDirectory(const std::string& dir, bool with_weights) {
  const std::string config_path = dir + "/config.json";
  if (!IsFile(config_path)) {
    return Status::InvalidArgument(dir + ": no config.json (not an HF model directory, or an unfinished export)");
  }
  PretrainedModel model;
  model.source = PretrainedModel::Source::kHfDirectory;
  model.path = dir;
  Result<json> config = ReadJsonFile(config_path);
  if (!config.ok()) return config.status();
  model.config = *config;
  auto model_type = config->find("model_type");
  Result<BertShapes> shapes = BertShapesFromConfig(model.config, config_path);
  if (!shapes.ok()) return shapes.status();
  if (model_type != config->end() && *model_type != "bert" &&
      !(*model_type == kPreLnModelType && shapes->pre_layer_norm)) {
    return Status::InvalidArgument(config_path + ": model_type: " + model_type->dump() + " is not \"bert\"" +
                                   (*model_type == kPreLnModelType ? " (\"" + std::string(kPreLnModelType) +
                                                                         "\" needs \"pre_layer_norm\": true)"
                                                                   : std::string()));
  }

  Result<std::shared_ptr<const Vocab>> vocab = Vocab::Load(dir + "/vocab.txt");
  if (!vocab.ok()) return vocab.status();
  model.vocab = (*vocab)->tokens();
  model.vocab_checksum = (*vocab)->checksum();
  if (static_cast<int64_t>(model.vocab.size()) > shapes->vocab_size) {
    return Status::InvalidArgument(dir + "/vocab.txt: " + std::to_string(model.vocab.size()) +
                                   " tokens but config.json's vocab_size is " + std::to_string(shapes->vocab_size));
  }

  // HF writes a huge sentinel model_max_length for "no limit"; the
  // position table is the real limit.
  model.model_max_length = shapes->max_position_embeddings;
  const std::string tokenizer_path = dir + "/tokenizer_config.json";
  if (IsFile(tokenizer_path)) {
    Result<json> tokenizer = ReadJsonFile(tokenizer_path);
    if (!tokenizer.ok()) return tokenizer.status();
    auto lower = tokenizer->find("do_lower_case");
    if (lower != tokenizer->end() && !lower->is_boolean()) {
      return Status::InvalidArgument(tokenizer_path + ": do_lower_case: expected true or false");
    }
    if (lower != tokenizer->end()) model.do_lower_case = lower->get<bool>();
    auto max_length = tokenizer->find("model_max_length");
    if (max_length != tokenizer->end() && max_length->is_number_integer() && max_length->get<int64_t>() > 0 &&
        max_length->get<int64_t>() < model.model_max_length) {
      model.model_max_length = max_length->get<int64_t>();
    }
  }

  Result<std::vector<NamedTensor>> tensors = ReadHfTensors(dir, with_weights);
  if (!tensors.ok()) return tensors.status();
  model.tensors = std::move(tensors).value();
  BERT_RETURN_IF_ERROR(CheckTensorsAgainstConfig(model.config, model.tensors, dir + "/model.safetensors"));
  model.config["architectures"] = {ArchitectureOf(model.tensors)};  // what the file holds
  if (!with_weights) model.tensors.clear();
  return model;
}

// HF's default label names for a classifier without id2label.
void FillLabels(const BertShapes& shapes, json* config) {
  if (!config->contains("id2label")) {
    json id2label = json::object();
    for (int64_t i = 0; i < shapes.num_labels; ++i) id2label[std::to_string(i)] = "LABEL_" + std::to_string(i);
    (*config)["id2label"] = id2label;
  }
  if (!config->contains("label2id")) {
    json label2id = json::object();
    for (const auto& [id, label] : (*config)["id2label"].items()) {
      if (label.is_string()) label2id[label.get<std::string>()] = std::stoll(id);
    }
    (*config)["label2id"] = label2id;
  }
  (*config)["num_labels"] = shapes.num_labels;
}

// The tensors to write: ours, plus HF's tied aliases of a pretraining head
// (cls.predictions.decoder.{weight,bias}), after the last cls.predictions.*
// tensor, where BertForPreTraining's state_dict lists them.
std::vector<NamedTensor> WithDecoderAliases(const std::vector<NamedTensor>& tensors) {
  const NamedTensor *embeddings = nullptr, *bias = nullptr;
  size_t last_prediction = tensors.size();
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].name == "bert.embeddings.word_embeddings.weight") embeddings = &tensors[i];
    if (tensors[i].name == "cls.predictions.bias") bias = &tensors[i];
    if (tensors[i].name.rfind("cls.predictions.", 0) == 0) last_prediction = i;
  }
  if (embeddings == nullptr || bias == nullptr) return tensors;
  std::vector<NamedTensor> out(tensors.begin(), tensors.begin() + static_cast<std::ptrdiff_t>(last_prediction + 1));
  out.push_back(NamedTensor{"cls.predictions.decoder.weight", embeddings->shape, embeddings->values});
  out.push_back(NamedTensor{"cls.predictions.decoder.bias", bias->shape, bias->values});
  out.insert(out.end(), tensors.begin() + static_cast<std::ptrdiff_t>(last_prediction + 1), tensors.end());
  return out;
}

}  // namespace

Result<PretrainedModel> LoadPretrained(const std::string& path, bool with_weights) {
  if (!IsDirectory(path)) return Status::NotFound(path + ": no such directory");
  if (IsFile(path + "/manifest.json")) {
    Result<LoadedCheckpoint> checkpoint = OpenCheckpointDir(path, with_weights);
    if (!checkpoint.ok()) return checkpoint.status();
    return LoadCheckpoint(*checkpoint, with_weights);
  }
  if (IsDirectory(path + "/checkpoints")) {
    Result<LoadedCheckpoint> checkpoint = CheckpointStore(path).LoadLatest();
    if (!checkpoint.ok()) return checkpoint.status();
    return LoadCheckpoint(*checkpoint, with_weights);
  }
  if (IsFile(path + "/config.json") || IsFile(path + "/model.safetensors") || IsFile(path + "/vocab.txt")) {
    return LoadHfDirectory(path, with_weights);
  }
  return Status::InvalidArgument(path + ": neither a run directory (checkpoints/), a checkpoint (manifest.json) "
                                        "nor an HF model directory (config.json)");
}

Status WriteHfDirectory(const std::string& dir, const PretrainedModel& model) {
  const std::string config_path = dir + "/config.json";
  Result<BertShapes> shapes = BertShapesFromConfig(model.config, config_path);
  if (!shapes.ok()) return shapes.status();
  BERT_RETURN_IF_ERROR(CheckTensorsAgainstConfig(model.config, model.tensors, dir + "/model.safetensors"));
  if (model.vocab.empty()) return Status::InvalidArgument(dir + "/vocab.txt: no tokens");
  if (model.model_max_length <= 0) {
    return Status::InvalidArgument(dir + "/tokenizer_config.json: model_max_length: must be positive, got " +
                                   std::to_string(model.model_max_length));
  }
  if (static_cast<int64_t>(model.vocab.size()) > shapes->vocab_size) {
    return Status::InvalidArgument(dir + "/vocab.txt: " + std::to_string(model.vocab.size()) +
                                   " tokens but vocab_size is " + std::to_string(shapes->vocab_size));
  }
  std::string vocab_text;
  for (size_t id = 0; id < model.vocab.size(); ++id) {
    const std::string& token = model.vocab[id];
    if (token.empty() || token.find('\n') != std::string::npos || token.find('\r') != std::string::npos) {
      return Status::InvalidArgument(dir + "/vocab.txt: token " + std::to_string(id) + " is empty or holds a newline");
    }
    vocab_text += token + "\n";
  }
  json config = model.config;
  config["model_type"] = shapes->pre_layer_norm ? kPreLnModelType : "bert";
  config["architectures"] = {ArchitectureOf(model.tensors)};  // what the tensors make
  if (!config.contains("torch_dtype")) config["torch_dtype"] = "float32";
  for (const NamedTensor& tensor : model.tensors) {
    if (tensor.name == "classifier.weight") FillLabels(*shapes, &config);
  }
  const json tokenizer = {{"do_lower_case", model.do_lower_case},
                          {"model_max_length", model.model_max_length},
                          {"tokenizer_class", "BertTokenizer"}};

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IoError(dir + ": cannot create: " + ec.message());
  // config.json goes first and comes back last: in between the directory
  // is visibly incomplete, and LoadPretrained refuses it.
  if (::unlink(config_path.c_str()) != 0 && errno != ENOENT) {
    return Status::IoError(config_path + ": cannot remove the old one: " + std::strerror(errno));
  }
  BERT_RETURN_IF_ERROR(checkpoint_internal::FsyncDirectory(dir));
  BERT_RETURN_IF_ERROR(WriteSafetensors(dir + "/model.safetensors", WithDecoderAliases(model.tensors)));
  BERT_RETURN_IF_ERROR(WriteFileAtomic(dir + "/vocab.txt", vocab_text));
  BERT_RETURN_IF_ERROR(WriteFileAtomic(dir + "/tokenizer_config.json", tokenizer.dump(2) + "\n"));
  return WriteFileAtomic(config_path, config.dump(2) + "\n");
}

}  // namespace bert
