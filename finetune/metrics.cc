#include "finetune/metrics.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include <glog/logging.h>

namespace bert::finetune {
namespace {

double Ratio(int64_t numerator, int64_t denominator) {
  return denominator == 0 ? 0.0 : static_cast<double>(numerator) / static_cast<double>(denominator);
}

std::string Fixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", decimals, value);
  return buffer;
}

std::string PadRight(const std::string& text, size_t width) {
  return text.size() >= width ? text : text + std::string(width - text.size(), ' ');
}
std::string PadLeft(const std::string& text, size_t width) {
  return text.size() >= width ? text : std::string(width - text.size(), ' ') + text;
}

}  // namespace

ClassificationMetrics ComputeMetrics(const std::vector<int32_t>& truth, const std::vector<int32_t>& predicted,
                                     const LabelMap& labels) {
  CHECK_EQ(truth.size(), predicted.size()) << "one prediction per example";
  const int32_t k = labels.size();
  ClassificationMetrics m;
  m.count = static_cast<int64_t>(truth.size());
  m.confusion.assign(k, std::vector<int64_t>(k, 0));
  int64_t correct = 0;
  for (size_t i = 0; i < truth.size(); ++i) {
    CHECK(truth[i] >= 0 && truth[i] < k && predicted[i] >= 0 && predicted[i] < k)
        << "label id out of range at " << i << ": " << truth[i] << ", " << predicted[i] << " (labels: " << k << ")";
    ++m.confusion[truth[i]][predicted[i]];
    if (truth[i] == predicted[i]) ++correct;
  }
  m.accuracy = Ratio(correct, m.count);
  double f1_sum = 0;
  for (int32_t c = 0; c < k; ++c) {
    int64_t predicted_as_c = 0, support = 0;
    for (int32_t other = 0; other < k; ++other) {
      predicted_as_c += m.confusion[other][c];
      support += m.confusion[c][other];
    }
    ClassMetrics cm;
    cm.label = labels.name(c);
    cm.support = support;
    // scikit-learn's zero_division=0: no predictions -> precision 0; no
    // support -> recall 0; P + R = 0 -> F1 0.
    cm.precision = Ratio(m.confusion[c][c], predicted_as_c);
    cm.recall = Ratio(m.confusion[c][c], support);
    cm.f1 = cm.precision + cm.recall == 0 ? 0.0 : 2 * cm.precision * cm.recall / (cm.precision + cm.recall);
    f1_sum += cm.f1;
    m.per_class.push_back(std::move(cm));
  }
  m.macro_f1 = k == 0 ? 0.0 : f1_sum / k;
  return m;
}

nlohmann::json ClassificationMetrics::ToJson() const {
  nlohmann::json j;
  j["count"] = count;
  j["accuracy"] = accuracy;
  j["macro_f1"] = macro_f1;
  j["loss"] = loss;
  j["per_class"] = nlohmann::json::array();
  j["labels"] = nlohmann::json::array();
  for (const ClassMetrics& c : per_class) {
    j["per_class"].push_back(
        {{"label", c.label}, {"precision", c.precision}, {"recall", c.recall}, {"f1", c.f1}, {"support", c.support}});
    j["labels"].push_back(c.label);
  }
  j["confusion_matrix"] = confusion;
  return j;
}

Result<ClassificationMetrics> ClassificationMetrics::FromJson(const nlohmann::json& json, const std::string& source) {
  if (!json.is_object()) return Status::InvalidArgument(source + ": metrics must be a JSON object");
  ClassificationMetrics m;
  try {
    m.count = json.at("count").get<int64_t>();
    m.accuracy = json.at("accuracy").get<double>();
    m.macro_f1 = json.at("macro_f1").get<double>();
    m.loss = json.value("loss", 0.0);
    for (const nlohmann::json& c : json.at("per_class")) {
      ClassMetrics cm;
      cm.label = c.at("label").get<std::string>();
      cm.precision = c.at("precision").get<double>();
      cm.recall = c.at("recall").get<double>();
      cm.f1 = c.at("f1").get<double>();
      cm.support = c.at("support").get<int64_t>();
      m.per_class.push_back(std::move(cm));
    }
    m.confusion = json.at("confusion_matrix").get<std::vector<std::vector<int64_t>>>();
  } catch (const nlohmann::json::exception& e) {
    return Status::InvalidArgument(source + ": not classification metrics: " + e.what());
  }
  const size_t k = m.per_class.size();
  bool square = m.confusion.size() == k;
  for (const auto& row : m.confusion) square = square && row.size() == k;
  if (!square) {
    return Status::InvalidArgument(source + ": confusion_matrix is not " + std::to_string(k) + " x " +
                                   std::to_string(k) + " (one row and column per class)");
  }
  return m;
}

std::string ClassificationMetrics::Table() const {
  size_t name_width = 12;  // "macro avg" and "accuracy" fit
  for (const ClassMetrics& c : per_class) name_width = std::max(name_width, c.label.size() + 2);
  std::ostringstream out;
  out << PadRight("label", name_width) << PadLeft("precision", 10) << PadLeft("recall", 10) << PadLeft("f1", 10)
      << PadLeft("support", 10) << "\n";
  double precision_sum = 0, recall_sum = 0;
  int64_t support_sum = 0;
  for (const ClassMetrics& c : per_class) {
    out << PadRight(c.label, name_width) << PadLeft(Fixed(c.precision, 4), 10) << PadLeft(Fixed(c.recall, 4), 10)
        << PadLeft(Fixed(c.f1, 4), 10) << PadLeft(std::to_string(c.support), 10) << "\n";
    precision_sum += c.precision;
    recall_sum += c.recall;
    support_sum += c.support;
  }
  const double k = per_class.empty() ? 1.0 : static_cast<double>(per_class.size());
  out << "\n";
  out << PadRight("accuracy", name_width) << PadLeft("", 20) << PadLeft(Fixed(accuracy, 4), 10)
      << PadLeft(std::to_string(count), 10) << "\n";
  out << PadRight("macro avg", name_width) << PadLeft(Fixed(precision_sum / k, 4), 10)
      << PadLeft(Fixed(recall_sum / k, 4), 10) << PadLeft(Fixed(macro_f1, 4), 10)
      << PadLeft(std::to_string(support_sum), 10) << "\n";
  if (loss != 0) out << PadRight("loss", name_width) << PadLeft("", 20) << PadLeft(Fixed(loss, 4), 10) << "\n";
  // Confusion matrix: rows are true labels, columns predicted (by id).
  out << "\nconfusion matrix (rows: true label, columns: predicted, in the order above)\n";
  size_t cell = 6;
  for (const auto& row : confusion) {
    for (int64_t v : row) cell = std::max(cell, std::to_string(v).size() + 2);
  }
  out << PadRight("", name_width + 5);
  for (size_t c = 0; c < per_class.size(); ++c) out << PadLeft("[" + std::to_string(c) + "]", cell);
  out << "\n";
  for (size_t r = 0; r < confusion.size(); ++r) {
    const std::string name = r < per_class.size() ? per_class[r].label : "";
    out << PadRight("[" + std::to_string(r) + "] " + name, name_width + 5);
    for (int64_t v : confusion[r]) out << PadLeft(std::to_string(v), cell);
    out << "\n";
  }
  return out.str();
}

Result<double> ClassificationMetrics::Get(const std::string& metric) const {
  if (metric == "accuracy") return accuracy;
  if (metric == "macro_f1") return macro_f1;
  if (metric == "loss") return loss;
  return Status::InvalidArgument("unknown metric '" + metric + "' (accuracy, macro_f1 or loss)");
}

bool MetricImproves(const std::string& metric, double value, double best) {
  return metric == "loss" ? value < best : value > best;
}

}  // namespace bert::finetune
