// Fine-tuning's per-parameter learning rates and its adversarial
// regulariser, over a BertForSequenceClassification's flat parameters.
//
// Layer-wise lr decay (Clark et al. 2020, ELECTRA, appendix A; Sun et al.
// 2019, "How to Fine-Tune BERT for Text Classification?", section 5.3):
// with L encoder layers and decay d, encoder layer l (0-based, as in
// "bert.encoder.layer.l.") gets lr * d^(L - l), the embeddings
// lr * d^(L + 1), and the pooler and classifier the peak lr. Freezing sets
// a range's lr_scale to 0, which FlatOptimizer leaves untouched (no update,
// no weight decay).
//
// FGM (Miyato et al. 2017, "Adversarial Training Methods for
// Semi-Supervised Text Classification", eq. 6): after the clean backward,
// the word-embedding matrix E gets r = epsilon * g / ||g|| (g = dLoss/dE);
// a second forward/backward adds the adversarial loss's gradient into the
// same buffer; Restore() puts back E's exact values.
// Not thread-safe.
#pragma once

#include "worker/torch.h"

#include <cstdint>
#include <string>
#include <vector>

#include "worker/model/flat_parameters.h"
#include "worker/train/optimizer.h"

namespace bert {

struct LayerwiseLrOptions {
  int64_t num_layers = 0;          // L: encoder layers of the model
  double layer_lr_decay = 1.0;     // d in (0, 1]; 1 = every range at the peak lr
  bool freeze_embeddings = false;  // bert.embeddings.* get lr_scale 0
  int32_t freeze_layers = 0;       // encoder layers 0 .. k-1 get lr_scale 0
};

// The lr multiplier of one parameter by name (see above).
double LayerwiseLrScale(const std::string& name, const LayerwiseLrOptions& options);

// One ParamRange per parameter (weight decay as the specs say) with its
// lr_scale; for FlatOptimizer's range constructor over the whole buffer.
std::vector<ParamRange> LayerwiseRanges(const FlatParameters& params, const LayerwiseLrOptions& options);

class Fgm {
 public:
  // `params` must hold `embedding_name` and outlive this object.
  Fgm(FlatParameters* params, double epsilon,
      const std::string& embedding_name = "bert.embeddings.word_embeddings.weight");

  // Saves E and adds r = epsilon * g / ||g|| from E's current gradient.
  // Returns false (and changes nothing) when ||g|| is 0 or not finite.
  bool Attack();
  // Copies the saved E back (bit-exact). No-op without a pending Attack().
  void Restore();

 private:
  FlatParameters* params_;
  double epsilon_;
  size_t slot_;
  torch::Tensor saved_;  // E before the attack; undefined when none is pending
};

}  // namespace bert
