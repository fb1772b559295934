// `bert-worker --quantize`: a fine-tuned fp32 classifier directory (bertctl
// finetune's output) as an int8 one (int8_format.h, docs/compression.md).
// Without a calibration file activations are dynamic (quantized per call at
// run time); with one, each Linear's input range is observed over the first
// calibration_samples texts through the fp32 graph and fixed as a uint8
// scale and zero point (static). Afterwards the written directory is loaded
// back and, on the calibration texts (when given), its predictions are
// compared with the fp32 model's and logged.
// Not thread-safe (one model, one thread).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "finetune/classification_data.h"

namespace bert {

struct QuantizeOptions {
  std::string model_dir;    // fp32 fine-tuned HF directory (config.json with id2label, model.safetensors)
  std::string output;       // the int8 directory to write
  bool overwrite = false;   // replace a non-empty output
  std::string calibration;  // texts (JSONL, CSV or TSV); "" = dynamic activations
  finetune::FileFormat format = finetune::FileFormat::kAuto;
  std::string text_field = "text";
  std::string text_pair_field;        // "" = single texts
  int32_t max_seq_len = 0;            // 0 = the directory's tokenizer_config model_max_length
  int32_t calibration_samples = 512;  // texts of the calibration file used (the first ones)
  int32_t batch_size = 32;            // calibration forward passes
};

struct QuantizeOutcome {
  Status status;
  int exit_code = 0;                // common/exit_codes.h: 2 bad model or flag, 7 bad calibration data
  int64_t calibration_examples = 0;
};
QuantizeOutcome RunQuantize(const QuantizeOptions& options);

}  // namespace bert
