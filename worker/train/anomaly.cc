#include "worker/train/anomaly.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <sstream>
#include <vector>

#include "common/file_util.h"

namespace bert {
namespace {

using nlohmann::json;

constexpr size_t kMinHistory = 10;  // steps in the history before spikes are looked for

std::string Number(double value) {
  std::ostringstream out;
  out << std::setprecision(4) << value;
  return out.str();
}

std::string UtcNowText() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

// A JSON array of step numbers into `out`; false if it is something else.
bool ReadSteps(const json& value, std::set<uint64_t>* out) {
  if (!value.is_array()) return false;
  for (const json& step : value) {
    if (!step.is_number_unsigned()) return false;
    out->insert(step.get<uint64_t>());
  }
  return true;
}

// A JSON array of finite numbers, the newest `keep` of them, into `out`.
bool ReadHistory(const json& value, size_t keep, std::deque<double>* out) {
  if (!value.is_array()) return false;
  out->clear();
  for (const json& number : value) {
    if (!number.is_number() || !std::isfinite(number.get<double>())) return false;
    out->push_back(number.get<double>());
  }
  while (out->size() > keep) out->pop_front();
  return true;
}

}  // namespace

std::string AnomalyRecordPath(const std::string& run_dir) { return run_dir + "/anomalies.json"; }

AnomalyGuard::AnomalyGuard(AnomalyConfig config) : config_(std::move(config)) {
  for (int64_t step : config_.skip_steps) config_skips_.insert(static_cast<uint64_t>(step));
}

Status AnomalyGuard::Restore(const json& state, const std::string& source) {
  if (state.is_null()) return Status::Ok();
  const auto bad = [&](const std::string& field) {
    return Status::Corruption(source + ": anomaly." + field + " must be a list of " +
                              (field == "skipped_steps" ? "step numbers" : "finite numbers"));
  };
  if (!state.is_object()) return Status::Corruption(source + ": anomaly must be an object");
  if (!ReadSteps(state.value("skipped_steps", json::array()), &skipped_)) return bad("skipped_steps");
  const size_t keep = static_cast<size_t>(config_.median_window);
  if (!ReadHistory(state.value("recent_loss", json::array()), keep, &losses_)) return bad("recent_loss");
  if (!ReadHistory(state.value("recent_grad_norm", json::array()), keep, &grad_norms_)) {
    return bad("recent_grad_norm");
  }
  return Status::Ok();
}

Status AnomalyGuard::LoadRecord(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Status::Ok();
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  const json record = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  const std::string fix = " (it lists the steps this run skipped after anomalies; restore it, or delete it to "
                          "train on those steps again)";
  if (record.is_discarded() || !record.is_object()) return Status::Corruption(path + ": not a JSON object" + fix);
  if (!ReadSteps(record.value("skipped_steps", json::array()), &skipped_)) {
    return Status::Corruption(path + ": skipped_steps must be a list of step numbers" + fix);
  }
  const json events = record.value("events", json::array());
  if (!events.is_array()) return Status::Corruption(path + ": events must be a list" + fix);
  events_ = events;
  return Status::Ok();
}

double AnomalyGuard::Median(const std::deque<double>& values) {
  std::vector<double> sorted(values.begin(), values.end());
  const size_t mid = sorted.size() / 2;
  std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(mid), sorted.end());
  return sorted[mid];
}

void AnomalyGuard::Accept(double loss, double grad_norm) {
  const size_t keep = static_cast<size_t>(config_.median_window);
  losses_.push_back(loss);
  grad_norms_.push_back(grad_norm);
  while (losses_.size() > keep) losses_.pop_front();
  while (grad_norms_.size() > keep) grad_norms_.pop_front();
}

std::string AnomalyGuard::Check(double loss, double grad_norm) {
  if (!std::isfinite(loss)) return "loss " + Number(loss);
  if (!std::isfinite(grad_norm)) return "gradient norm " + Number(grad_norm);
  if (losses_.size() >= kMinHistory) {
    const double loss_median = Median(losses_), norm_median = Median(grad_norms_);
    const std::string of_the = " of the last " + std::to_string(losses_.size()) + " steps";
    if (config_.loss_spike > 0 && loss > config_.loss_spike * loss_median) {
      return "loss " + Number(loss) + " is " + Number(loss / loss_median) + "x the median " + Number(loss_median) +
             of_the + " (train.anomaly.loss_spike " + Number(config_.loss_spike) + ")";
    }
    if (config_.grad_norm_spike > 0 && grad_norm > config_.grad_norm_spike * norm_median) {
      return "gradient norm " + Number(grad_norm) + " is " + Number(grad_norm / norm_median) + "x the median " +
             Number(norm_median) + of_the + " (train.anomaly.grad_norm_spike " + Number(config_.grad_norm_spike) +
             ")";
    }
  }
  Accept(loss, grad_norm);
  return "";
}

Status AnomalyGuard::AddSkip(uint64_t step, const std::string& reason, const std::string& latest_checkpoint) {
  const uint64_t window = static_cast<uint64_t>(config_.skip_window);
  size_t recent = 1;  // this one
  for (uint64_t skipped : skipped_) {
    if (skipped != step && skipped + window > step && skipped <= step) ++recent;
  }
  const bool diverges = recent > static_cast<size_t>(config_.max_skips);
  events_.push_back({{"step", step}, {"reason", reason}, {"at", UtcNowText()}, {"action", diverges ? "stop" : "skip"}});
  if (diverges) {
    return Status::FailedPrecondition(
        "step " + std::to_string(step) + ": " + reason + "; that is " + std::to_string(recent) +
        " anomalies within " + std::to_string(window) + " steps, more than train.anomaly.max_skips " +
        std::to_string(config_.max_skips) + " allow: the run diverges, and skipping batches would only hide it. "
        "Continue from its last good checkpoint (" + (latest_checkpoint.empty() ? "none yet" : latest_checkpoint) +
        ") in a new run with train.init_from set to it and a lower train.lr or a longer train.warmup_steps");
  }
  skipped_.insert(step);
  return Status::Ok();
}

json AnomalyGuard::StateJson() const {
  return json{{"skipped_steps", skipped_},
              {"recent_loss", std::vector<double>(losses_.begin(), losses_.end())},
              {"recent_grad_norm", std::vector<double>(grad_norms_.begin(), grad_norms_.end())}};
}

std::string AnomalyGuard::RecordText() const {
  return json{{"skipped_steps", skipped_}, {"events", events_}}.dump(2) + "\n";
}

}  // namespace bert
