#include "worker/train/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace bert {

Result<LrDecay> ParseLrDecay(const std::string& name) {
  if (name == "linear") return LrDecay::kLinear;
  if (name == "polynomial") return LrDecay::kPolynomial;
  if (name == "cosine") return LrDecay::kCosine;
  if (name == "constant") return LrDecay::kConstant;
  return Status::InvalidArgument("schedule.decay: must be linear, polynomial, cosine or constant, got \"" + name +
                                 "\"");
}

const char* LrDecayName(LrDecay decay) {
  switch (decay) {
    case LrDecay::kLinear: return "linear";
    case LrDecay::kPolynomial: return "polynomial";
    case LrDecay::kCosine: return "cosine";
    case LrDecay::kConstant: return "constant";
  }
  return "?";
}

Status LrSchedule::Validate() const {
  auto fail = [](const char* field, const std::string& rule, double value) {
    std::ostringstream out;
    out << "schedule." << field << ": must be " << rule << ", got " << value;
    return Status::InvalidArgument(out.str());
  };
  if (!(peak_lr > 0)) return fail("peak_lr", "positive", peak_lr);
  if (total_steps <= 0) return fail("total_steps", "positive", static_cast<double>(total_steps));
  if (warmup_steps < 0 || warmup_steps > total_steps) {
    return fail("warmup_steps", "in [0, total_steps (" + std::to_string(total_steps) + ")]",
                static_cast<double>(warmup_steps));
  }
  if (!(end_lr >= 0 && end_lr <= peak_lr)) return fail("end_lr", "in [0, peak_lr]", end_lr);
  if (!(power > 0)) return fail("power", "positive", power);
  return Status::Ok();
}

namespace {

double Decayed(const LrSchedule& s, double progress) {
  const double peak_lr = s.peak_lr, end_lr = s.end_lr, power = s.power;
  const LrDecay decay = s.decay;
  double fraction = 1.0 - progress;  // linear
  if (decay == LrDecay::kPolynomial) fraction = std::pow(1.0 - progress, power);
  if (decay == LrDecay::kCosine) fraction = 0.5 * (1.0 + std::cos(M_PI * progress));
  return end_lr + (peak_lr - end_lr) * fraction;
}

}  // namespace

double LrSchedule::At(int64_t step) const {
  const int64_t t = std::max<int64_t>(step, 1);
  if (t <= warmup_steps) return peak_lr * static_cast<double>(t) / static_cast<double>(warmup_steps);
  if (decay == LrDecay::kConstant) return peak_lr;
  const int64_t decay_steps = total_steps - warmup_steps;
  const double progress =
      decay_steps <= 0 ? 1.0
                       : std::clamp(static_cast<double>(t - warmup_steps) / static_cast<double>(decay_steps), 0.0, 1.0);
  return Decayed(*this, progress);
}

double LrSchedule::AtBudget(int64_t step, double budget_fraction) const {
  const int64_t t = std::max<int64_t>(step, 1);
  if (t <= warmup_steps) return peak_lr * static_cast<double>(t) / static_cast<double>(warmup_steps);
  if (decay == LrDecay::kConstant) return peak_lr;
  const double progress = budget_fraction == budget_fraction ? std::clamp(budget_fraction, 0.0, 1.0) : 1.0;
  return Decayed(*this, progress);
}

}  // namespace bert
