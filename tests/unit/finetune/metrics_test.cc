// Classification metrics against hand-computed values, with scikit-learn's
// conventions for a class never predicted and a class with no support.
#include "finetune/metrics.h"

#include <gtest/gtest.h>

namespace bert::finetune {
namespace {

// Labels a b c d. truth/pred chosen so that c is never predicted and d has
// no support (but is predicted once). Confusion matrix [true][pred]:
//   a: 2 1 0 0 | b: 0 1 0 1 | c: 2 1 0 0 | d: 0 0 0 0
// a: P = 2/4, R = 2/3, F1 = 4/7;  b: P = 1/3, R = 1/2, F1 = 2/5;
// c: P = 0 (no predictions), R = 0, F1 = 0;  d: P = 0, R = 0 (no support), F1 = 0.
// sklearn: f1_score(t, p, average="macro", labels=[0,1,2,3]) = (4/7 + 2/5) / 4.
class MetricsTest : public ::testing::Test {
 protected:
  LabelMap labels_ = LabelMap::FromNames({"a", "b", "c", "d"}, "test").value();
  ClassificationMetrics m_ = ComputeMetrics({0, 0, 0, 1, 1, 2, 2, 2}, {0, 0, 1, 1, 3, 0, 1, 0}, labels_);
};

TEST_F(MetricsTest, MatchesHandComputedScikitLearnValues) {
  EXPECT_EQ(m_.count, 8);
  EXPECT_DOUBLE_EQ(m_.accuracy, 3.0 / 8);
  EXPECT_DOUBLE_EQ(m_.per_class[0].precision, 0.5);
  EXPECT_DOUBLE_EQ(m_.per_class[0].recall, 2.0 / 3);
  EXPECT_NEAR(m_.per_class[0].f1, 4.0 / 7, 1e-12);
  EXPECT_DOUBLE_EQ(m_.per_class[1].precision, 1.0 / 3);
  EXPECT_DOUBLE_EQ(m_.per_class[1].recall, 0.5);
  EXPECT_NEAR(m_.per_class[1].f1, 0.4, 1e-12);
  EXPECT_EQ(m_.per_class[2].precision, 0.0);  // never predicted
  EXPECT_EQ(m_.per_class[2].recall, 0.0);
  EXPECT_EQ(m_.per_class[2].support, 3);
  EXPECT_EQ(m_.per_class[3].precision, 0.0);  // predicted once, wrongly
  EXPECT_EQ(m_.per_class[3].recall, 0.0);     // no support
  EXPECT_EQ(m_.per_class[3].support, 0);
  EXPECT_NEAR(m_.macro_f1, (4.0 / 7 + 0.4) / 4, 1e-12);  // absent classes count
  EXPECT_EQ(m_.confusion, (std::vector<std::vector<int64_t>>{{2, 1, 0, 0}, {0, 1, 0, 1}, {2, 1, 0, 0}, {0, 0, 0, 0}}));
}

TEST_F(MetricsTest, PerfectPredictionsScoreOne) {
  ClassificationMetrics m = ComputeMetrics({0, 1, 1}, {0, 1, 1}, LabelMap::FromNames({"x", "y"}, "t").value());
  EXPECT_EQ(m.accuracy, 1.0);
  EXPECT_EQ(m.macro_f1, 1.0);
}

TEST_F(MetricsTest, JsonRoundTripsAndHasTheDocumentedKeys) {
  m_.loss = 0.75;
  const nlohmann::json j = m_.ToJson();
  for (const char* key : {"count", "accuracy", "macro_f1", "loss", "per_class", "labels", "confusion_matrix"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["labels"], nlohmann::json({"a", "b", "c", "d"}));
  EXPECT_EQ(j["per_class"][1]["support"], 2);
  Result<ClassificationMetrics> back = ClassificationMetrics::FromJson(j, "metrics.json");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->ToJson(), j);
  nlohmann::json broken = j;
  broken.erase("accuracy");
  Result<ClassificationMetrics> bad = ClassificationMetrics::FromJson(broken, "metrics.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().rfind("metrics.json: ", 0), 0u);
  broken = j;
  broken["confusion_matrix"] = {{1, 2}};
  EXPECT_FALSE(ClassificationMetrics::FromJson(broken, "metrics.json").ok());
}

TEST_F(MetricsTest, TableShowsEveryClassTotalsAndConfusion) {
  const std::string table = m_.Table();
  EXPECT_NE(table.find("precision"), std::string::npos);
  // Row for class a: precision 0.5000, recall 0.6667, f1 0.5714, support 3.
  EXPECT_NE(table.find("a               0.5000    0.6667    0.5714         3"), std::string::npos) << table;
  EXPECT_NE(table.find("d               0.0000    0.0000    0.0000         0"), std::string::npos) << table;
  EXPECT_NE(table.find("accuracy                            0.3750         8"), std::string::npos) << table;
  EXPECT_NE(table.find("macro avg       0.2083    0.2917    0.2429         8"), std::string::npos) << table;
  EXPECT_NE(table.find("confusion matrix"), std::string::npos);
  EXPECT_NE(table.find("[2] c                 2     1     0     0"), std::string::npos) << table;
}

TEST_F(MetricsTest, GetAndImprovementDirection) {
  EXPECT_DOUBLE_EQ(m_.Get("accuracy").value(), 0.375);
  EXPECT_DOUBLE_EQ(m_.Get("macro_f1").value(), m_.macro_f1);
  EXPECT_FALSE(m_.Get("f1").ok());
  EXPECT_TRUE(MetricImproves("macro_f1", 0.6, 0.5));
  EXPECT_FALSE(MetricImproves("accuracy", 0.5, 0.5));
  EXPECT_TRUE(MetricImproves("loss", 0.4, 0.5));
  EXPECT_FALSE(MetricImproves("loss", 0.6, 0.5));
}

}  // namespace
}  // namespace bert::finetune
