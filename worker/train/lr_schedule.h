// Learning-rate schedule: linear warmup, then linear, polynomial or cosine
// decay to end_lr (Devlin et al. 2019 use linear warmup over 10k steps and
// linear decay; NVIDIA's BERT/LAMB recipe uses polynomial decay, power 0.5).
//
// Steps count optimizer updates from 1 (the first update is step 1):
//   t <= warmup_steps:  lr = peak_lr * t / warmup_steps
//   t > warmup_steps:   progress = (t - warmup) / (total - warmup), clamped to [0, 1]
//     linear:     end + (peak - end) * (1 - progress)
//     polynomial: end + (peak - end) * (1 - progress)^power
//     cosine:     end + (peak - end) * (1 + cos(pi * progress)) / 2
//     constant:   peak
// so the first update has a non-zero rate and step total_steps has end_lr.
// With a time budget (train.time_budget) the decay runs over the budget's
// time instead: AtBudget(t, f) uses progress = f, the fraction of the budget
// spent (after warmup, which stays in steps), so the rate reaches end_lr
// when the budget is spent, whatever the step rate.
// A pure function of (options, step); thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace bert {

enum class LrDecay { kLinear, kPolynomial, kCosine, kConstant };
Result<LrDecay> ParseLrDecay(const std::string& name);  // "linear" | "polynomial" | "cosine" | "constant"
const char* LrDecayName(LrDecay decay);

struct LrSchedule {
  double peak_lr = 1e-4;        // rate at the end of warmup (BERT-Base: 1e-4 with Adam)
  int64_t warmup_steps = 10000; // linear ramp from 0 (BERT: 10k)
  int64_t total_steps = 1000000;// the step where decay reaches end_lr (BERT: 1M)
  LrDecay decay = LrDecay::kLinear;
  double power = 1.0;           // exponent of polynomial decay (NVIDIA LAMB: 0.5)
  double end_lr = 0.0;          // floor reached at total_steps and kept after

  // Names the bad field, e.g. "schedule.warmup_steps: must be <= total_steps (100), got 200".
  Status Validate() const;
  // The rate for update number `step` (>= 1; 0 is treated as 1).
  double At(int64_t step) const;
  // The rate for update `step` with `budget_fraction` of the time budget
  // spent (clamped to [0, 1]).
  double AtBudget(int64_t step, double budget_fraction) const;
};

}  // namespace bert
