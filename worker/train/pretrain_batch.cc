#include "worker/train/pretrain_batch.h"

#include <algorithm>
#include <string>

namespace bert {
namespace {

std::string SampleName(size_t i, const TrainingSample& sample) {
  return "sample " + std::to_string(i) + " (index " + std::to_string(sample.index) + ")";
}

Status CheckSample(size_t i, const TrainingSample& sample) {
  const size_t length = sample.input_ids.size();
  if (length == 0) return Status::InvalidArgument(SampleName(i, sample) + ": no tokens");
  if (sample.segment_b_start > length) {
    return Status::InvalidArgument(SampleName(i, sample) + ": segment_b_start " +
                                   std::to_string(sample.segment_b_start) + " beyond length " +
                                   std::to_string(length));
  }
  if (sample.masked_positions.size() != sample.masked_labels.size()) {
    return Status::InvalidArgument(SampleName(i, sample) + ": " + std::to_string(sample.masked_positions.size()) +
                                   " masked positions but " + std::to_string(sample.masked_labels.size()) +
                                   " labels");
  }
  for (size_t j = 0; j < sample.masked_positions.size(); ++j) {
    if (sample.masked_positions[j] >= length || (j > 0 && sample.masked_positions[j] <= sample.masked_positions[j - 1])) {
      return Status::InvalidArgument(SampleName(i, sample) + ": masked position " +
                                     std::to_string(sample.masked_positions[j]) +
                                     " out of range or not increasing (length " + std::to_string(length) + ")");
    }
  }
  return Status::Ok();
}

}  // namespace

PretrainBatch PretrainBatch::To(torch::Device device) const {
  // To a GPU: through pinned memory, asynchronously (stream-ordered before
  // the forward pass that reads them); the host tensors may be reused at once.
  const bool pinned = device.is_cuda() && input_ids.is_cpu();
  auto move = [&](const torch::Tensor& t) {
    return pinned ? t.pin_memory().to(device, /*non_blocking=*/true) : t.to(device);
  };
  PretrainBatch out;
  out.input_ids = move(input_ids);
  out.token_type_ids = move(token_type_ids);
  out.lengths = move(lengths);
  out.masked_positions = move(masked_positions);
  out.masked_labels = move(masked_labels);
  out.nsp_labels = move(nsp_labels);
  return out;
}

Result<PretrainBatch> CollateSamples(const std::vector<TrainingSample>& samples, const CollateOptions& options) {
  if (samples.empty()) return Status::InvalidArgument("collate: empty batch");
  size_t longest = 0;
  size_t num_masked = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    BERT_RETURN_IF_ERROR(CheckSample(i, samples[i]));
    longest = std::max(longest, samples[i].input_ids.size());
    num_masked += samples[i].masked_positions.size();
  }
  const int64_t batch = static_cast<int64_t>(samples.size());
  int64_t seq = static_cast<int64_t>(longest);
  if (options.pad_to != 0) {
    if (options.pad_to < seq) {
      return Status::InvalidArgument("collate: pad_to " + std::to_string(options.pad_to) +
                                     " is shorter than the longest sample (" + std::to_string(seq) + ")");
    }
    seq = options.pad_to;
  }
  auto long_options = torch::TensorOptions().dtype(torch::kLong);
  PretrainBatch out;
  out.input_ids = torch::full({batch, seq}, options.pad_id, long_options);
  out.token_type_ids = torch::zeros({batch, seq}, long_options);
  out.lengths = torch::empty({batch}, long_options);
  out.masked_positions = torch::empty({static_cast<int64_t>(num_masked)}, long_options);
  out.masked_labels = torch::empty({static_cast<int64_t>(num_masked)}, long_options);
  out.nsp_labels = torch::empty({batch}, long_options);
  int64_t* ids = out.input_ids.data_ptr<int64_t>();
  int64_t* types = out.token_type_ids.data_ptr<int64_t>();
  int64_t* positions = out.masked_positions.data_ptr<int64_t>();
  int64_t* labels = out.masked_labels.data_ptr<int64_t>();
  int64_t* lengths = out.lengths.data_ptr<int64_t>();
  int64_t* nsp_labels = out.nsp_labels.data_ptr<int64_t>();
  size_t next_masked = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const TrainingSample& sample = samples[static_cast<size_t>(b)];
    const int64_t length = static_cast<int64_t>(sample.input_ids.size());
    int64_t* row_ids = ids + b * seq;
    int64_t* row_types = types + b * seq;
    for (int64_t t = 0; t < length; ++t) {
      row_ids[t] = sample.input_ids[static_cast<size_t>(t)];
      row_types[t] = t >= static_cast<int64_t>(sample.segment_b_start) ? 1 : 0;
    }
    for (size_t j = 0; j < sample.masked_positions.size(); ++j, ++next_masked) {
      positions[next_masked] = b * seq + sample.masked_positions[j];
      labels[next_masked] = sample.masked_labels[j];
    }
    lengths[b] = length;
    nsp_labels[b] = sample.is_random_next ? 1 : 0;
  }
  return out;
}

Result<PretrainBatch> CollateBatch(const Batch& batch) {
  CollateOptions options;
  options.pad_id = batch.pad_id;
  options.pad_to = batch.seq_len;
  return CollateSamples(batch.samples, options);
}

Status CheckBatchFitsModel(const PretrainBatch& batch, const BertConfig& config) {
  if (batch.input_ids.dim() != 2 || batch.token_type_ids.sizes() != batch.input_ids.sizes() ||
      batch.lengths.dim() != 1 || batch.lengths.size(0) != batch.batch_size() ||
      batch.nsp_labels.sizes() != batch.lengths.sizes() ||
      batch.masked_positions.sizes() != batch.masked_labels.sizes()) {
    return Status::InvalidArgument("batch: inconsistent tensor shapes");
  }
  if (batch.seq_len() > config.max_position_embeddings) {
    return Status::InvalidArgument("batch: sequence length " + std::to_string(batch.seq_len()) +
                                   " exceeds max_position_embeddings " +
                                   std::to_string(config.max_position_embeddings));
  }
  auto in_range = [](const torch::Tensor& t, int64_t low, int64_t high) {
    return t.numel() == 0 || (t.min().item<int64_t>() >= low && t.max().item<int64_t>() < high);
  };
  if (!in_range(batch.input_ids, 0, config.vocab_size)) {
    return Status::InvalidArgument("batch: input id outside [0, vocab_size " + std::to_string(config.vocab_size) + ")");
  }
  if (!in_range(batch.masked_labels, 0, config.vocab_size)) {
    return Status::InvalidArgument("batch: masked label outside [0, vocab_size " + std::to_string(config.vocab_size) +
                                   ")");
  }
  if (!in_range(batch.token_type_ids, 0, config.type_vocab_size)) {
    return Status::InvalidArgument("batch: token type outside [0, type_vocab_size " +
                                   std::to_string(config.type_vocab_size) + ")");
  }
  if (!in_range(batch.lengths, 1, batch.seq_len() + 1)) {
    return Status::InvalidArgument("batch: a length is outside [1, " + std::to_string(batch.seq_len()) + "]");
  }
  if (!in_range(batch.masked_positions, 0, batch.batch_size() * batch.seq_len())) {
    return Status::InvalidArgument("batch: masked position outside the batch");
  }
  if (!in_range(batch.nsp_labels, 0, 2)) return Status::InvalidArgument("batch: NSP label not 0 or 1");
  return Status::Ok();
}

}  // namespace bert
