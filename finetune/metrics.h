// Classification metrics: accuracy, macro-F1, per-class precision, recall
// and F1, and the confusion matrix, as scikit-learn's accuracy_score,
// f1_score(average="macro"), precision_recall_fscore_support and
// confusion_matrix compute them (a class with no predictions has precision
// 0; one with no support has recall 0; F1 is 0 when P + R = 0; macro-F1
// averages over every class of the label map, including absent ones).
// Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "finetune/classification_data.h"

namespace bert::finetune {

struct ClassMetrics {
  std::string label;
  double precision = 0;
  double recall = 0;
  double f1 = 0;
  int64_t support = 0;  // examples whose true label is this class
};

struct ClassificationMetrics {
  int64_t count = 0;        // examples scored
  double accuracy = 0;
  double macro_f1 = 0;
  double loss = 0;          // mean loss when the caller sets it (0 otherwise)
  std::vector<ClassMetrics> per_class;        // in label-id order
  std::vector<std::vector<int64_t>> confusion;  // [true id][predicted id]

  // {"count", "accuracy", "macro_f1", "loss", "per_class": [{label, precision,
  // recall, f1, support}], "labels": [...], "confusion_matrix": [[...]]}.
  nlohmann::json ToJson() const;
  static Result<ClassificationMetrics> FromJson(const nlohmann::json& json, const std::string& source);
  // A fixed-width table: one row per class, then accuracy and macro-F1, then
  // the confusion matrix; ready to print.
  std::string Table() const;
  // "accuracy" | "macro_f1" | "loss" (for early stopping); error on others.
  Result<double> Get(const std::string& metric) const;
};

// truth[i] and predicted[i] are LabelMap ids (0 <= id < labels.size()).
ClassificationMetrics ComputeMetrics(const std::vector<int32_t>& truth, const std::vector<int32_t>& predicted,
                                     const LabelMap& labels);

// True when `metric` improves from `best` to `value` (higher is better,
// except "loss").
bool MetricImproves(const std::string& metric, double value, double best);

}  // namespace bert::finetune
