// Monitoring of real runs: bert-coordinator and `mpirun -np 2 bert-worker`
// on loopback (pretrain_run.h), watched through the coordinator's HTTP
// (coordinator/status_http.h) and `bertctl status`:
//   1. /status and /metrics describe the running run: progress, loss and
//      accuracies, rates, MFU, ETA, checkpoint, and per worker host, device,
//      heartbeat, step, step and compute time, data wait and memory;
//   2. `promtool check metrics` (Debian's prometheus) accepts /metrics;
//   3. headless Chromium draws the dashboard's charts with data: the DOM
//      after its scripts ran, and the pixels of a screenshot;
//   4. a worker killed with SIGKILL shows as dead within the heartbeat
//      timeout, and the run as failed;
//   5. `bertctl status` on a live run, on a finished run and on a run whose
//      coordinator is gone.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>

#include "integration/worker/pretrain_run.h"

namespace bert::testing {
namespace {

struct Response {
  int status = 0;  // 0: no answer
  std::string body, content_type;
};

// GET url + path, url as in RUN/coordinator/http ("http://HOST:PORT/").
Response Get(const std::string& url, const std::string& path) {
  std::string base = url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  httplib::Client client(base);
  client.set_connection_timeout(std::chrono::seconds(2));
  client.set_read_timeout(std::chrono::seconds(5));
  httplib::Result result = client.Get(path);
  if (!result) return {};
  return {result->status, result->body, result->get_header_value("Content-Type")};
}

Json GetStatus(const std::string& url) {
  const Response response = Get(url, "/status");
  return response.status == 200 ? Json::parse(response.body, nullptr, false) : Json();
}

std::string Hostname() {
  char name[256] = {0};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

// A PNG's pixels as RGB (8-bit RGB or RGBA, not interlaced: what Chromium
// writes). Empty on anything else.
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

uint32_t BigEndian32(const std::string& bytes, size_t at) {
  return (uint32_t{static_cast<uint8_t>(bytes[at])} << 24) | (uint32_t{static_cast<uint8_t>(bytes[at + 1])} << 16) |
         (uint32_t{static_cast<uint8_t>(bytes[at + 2])} << 8) | uint32_t{static_cast<uint8_t>(bytes[at + 3])};
}

Image DecodePng(const std::string& png) {
  Image image;
  if (png.size() < 8 || png.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return image;
  std::string compressed;
  int channels = 0;
  for (size_t at = 8; at + 8 <= png.size();) {
    const uint32_t length = BigEndian32(png, at);
    const std::string type = png.substr(at + 4, 4);
    if (at + 12 + length > png.size()) return Image();
    if (type == "IHDR") {
      image.width = static_cast<int>(BigEndian32(png, at + 8));
      image.height = static_cast<int>(BigEndian32(png, at + 12));
      const int depth = png[at + 16], color = png[at + 17], interlace = png[at + 20];
      if (depth != 8 || (color != 2 && color != 6) || interlace != 0) return Image();
      channels = color == 6 ? 4 : 3;
    } else if (type == "IDAT") {
      compressed += png.substr(at + 8, length);
    }
    at += 12 + length;
  }
  const size_t stride = static_cast<size_t>(image.width) * channels;
  std::vector<uint8_t> raw((stride + 1) * image.height);
  uLongf raw_size = raw.size();
  if (channels == 0 || uncompress(raw.data(), &raw_size, reinterpret_cast<const Bytef*>(compressed.data()),
                                  compressed.size()) != Z_OK || raw_size != raw.size()) {
    return Image();
  }
  // Undo the per-row filters (PNG spec, section 9).
  std::vector<uint8_t> pixels(stride * image.height), zero(stride, 0);
  for (int y = 0; y < image.height; ++y) {
    const uint8_t filter = raw[y * (stride + 1)];
    const uint8_t* in = &raw[y * (stride + 1) + 1];
    uint8_t* out = &pixels[y * stride];
    const uint8_t* up = y > 0 ? &pixels[(y - 1) * stride] : zero.data();
    for (size_t i = 0; i < stride; ++i) {
      const int a = i >= static_cast<size_t>(channels) ? out[i - channels] : 0, b = up[i],
                c = i >= static_cast<size_t>(channels) ? up[i - channels] : 0;
      int predicted = 0;
      switch (filter) {
        case 0: predicted = 0; break;
        case 1: predicted = a; break;
        case 2: predicted = b; break;
        case 3: predicted = (a + b) / 2; break;
        case 4: {
          const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: return Image();
      }
      out[i] = static_cast<uint8_t>(in[i] + predicted);
    }
  }
  image.rgb.resize(static_cast<size_t>(image.width) * image.height * 3);
  for (size_t p = 0; p < static_cast<size_t>(image.width) * image.height; ++p) {
    for (int k = 0; k < 3; ++k) image.rgb[p * 3 + k] = pixels[p * channels + k];
  }
  return image;
}

// Pixels within `tolerance` of a colour in every channel.
size_t CountColor(const Image& image, int r, int g, int b, int tolerance = 40) {
  size_t count = 0;
  for (size_t p = 0; p + 2 < image.rgb.size(); p += 3) {
    if (std::abs(image.rgb[p] - r) <= tolerance && std::abs(image.rgb[p + 1] - g) <= tolerance &&
        std::abs(image.rgb[p + 2] - b) <= tolerance) {
      ++count;
    }
  }
  return count;
}

class MonitoringTest : public PretrainRunTest {
 protected:
  // A long run (it is stopped by the test) with the status HTTP on.
  Run StartLong(const std::string& name, uint64_t checkpoint_every, std::vector<std::string> coordinator_flags = {}) {
    coordinator_flags.insert(coordinator_flags.end(), {"--http-bind", "127.0.0.1:0"});
    return Start(name, WriteRun(name, kMicroBatch, 100000, checkpoint_every), 2, {}, coordinator_flags);
  }

  // Waits until /status reports at least `steps` steps; the last status.
  Json WaitForSteps(Run& run, const std::string& url, uint64_t steps, int timeout_ms = 90000) {
    Json status;
    const bool reached = WaitFor(
        [&] {
          status = GetStatus(url);
          return status.is_object() && status["step"].get<uint64_t>() >= steps;
        },
        timeout_ms);
    EXPECT_TRUE(reached) << status.dump() << ReadLog(*run.coordinator) << ReadLog(*run.workers);
    return status;
  }

  CommandResult Chromium(const std::string& flags, const std::string& url) {
    // Its stderr (GPU and D-Bus chatter) goes to a file, the DOM to stdout.
    return RunCommand("(chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir=" +
                      (work_ / "chromium") + " --window-size=1200,900 --virtual-time-budget=5000 " + flags + " " +
                      url + " 2>" + (work_ / "chromium.log") + ")");
  }
};

TEST_F(MonitoringTest, StatusAndMetricsDescribeARunningTwoWorkerRun) {
  Run run = StartLong("mon", /*checkpoint_every=*/5);
  const std::string url = StatusUrl("mon");
  ASSERT_FALSE(url.empty()) << ReadLog(*run.coordinator);
  EXPECT_EQ(url.rfind("http://127.0.0.1:", 0), 0u) << url;
  Json s;
  ASSERT_TRUE(WaitFor(
      [&] {
        s = GetStatus(url);
        return s.is_object() && s["last_checkpoint_step"].get<uint64_t>() >= 5 && s["step"].get<uint64_t>() >= 6;
      },
      90000))
      << s.dump(2) << ReadLog(*run.coordinator);

  EXPECT_EQ(s["run"], "mon");
  EXPECT_TRUE(s["state"] == "running" || s["state"] == "checkpointing") << s["state"];
  const uint64_t step = s["step"].get<uint64_t>();
  EXPECT_EQ(s["total_steps"], 100000);
  EXPECT_DOUBLE_EQ(s["progress"].get<double>(), step / 100000.0);
  EXPECT_EQ(s["samples_seen"], step * kGlobalBatch);
  EXPECT_GE(s["epoch"].get<int>(), 0);
  EXPECT_EQ(s["last_checkpoint"].get<std::string>().rfind("step-0000", 0), 0u) << s["last_checkpoint"];
  EXPECT_EQ(s["restarts"], 0);
  // bert-tiny starts near ln(30522) + ln(2) ~ 11.
  EXPECT_GT(s["loss"].get<double>(), 1);
  EXPECT_LT(s["loss"].get<double>(), 20);
  EXPECT_GT(s["loss_avg"].get<double>(), 1);
  for (const char* key : {"mlm_accuracy", "mlm_accuracy_avg", "nsp_accuracy", "nsp_accuracy_avg", "mfu",
                          "data_wait_fraction"}) {
    ASSERT_TRUE(s[key].is_number()) << key << ": " << s.dump(2);
    EXPECT_GE(s[key].get<double>(), 0) << key;
    EXPECT_LE(s[key].get<double>(), 1) << key;
  }
  EXPECT_GT(s["mfu"].get<double>(), 0);
  EXPECT_GT(s["lr"].get<double>(), 0);
  EXPECT_GT(s["samples_per_s"].get<double>(), 1);
  EXPECT_GT(s["tokens_per_s"].get<double>(), s["samples_per_s"].get<double>());
  EXPECT_GT(s["eta_s"].get<double>(), 0);
  ASSERT_EQ(s["workers"].size(), 2u);
  for (int rank = 0; rank < 2; ++rank) {
    const Json& w = s["workers"][rank];
    EXPECT_EQ(w["rank"], rank);
    EXPECT_EQ(w["host"], Hostname());
    EXPECT_EQ(w["device"], "cpu");
    EXPECT_EQ(w["state"], "alive");
    EXPECT_LT(w["heartbeat_age_s"].get<double>(), 1.5);
    EXPECT_GE(w["step"].get<uint64_t>(), step);
    EXPECT_GT(w["step_time_ms"].get<double>(), 0);
    // Its own work is part of the step (the rest: all-reduces and waits).
    EXPECT_GT(w["compute_ms"].get<double>(), 0);
    EXPECT_LT(w["compute_ms"].get<double>(), w["step_time_ms"].get<double>());
    EXPECT_GE(w["data_wait_fraction"].get<double>(), 0);
    EXPECT_GT(w["rss_bytes"].get<double>(), 50e6) << "a LibTorch process with bert-tiny";
  }

  const Response metrics = Get(url, "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.content_type.rfind("text/plain; version=0.0.4", 0), 0u) << metrics.content_type;
  const std::string labels1 = "{run=\"mon\",rank=\"1\",host=\"" + Hostname() + "\"}";
  for (const std::string& expected :
       {std::string("# HELP bert_step "), std::string("# TYPE bert_step gauge\n"),
        std::string("bert_run_state{run=\"mon\",state=\"done\"} 0\n"), std::string("bert_loss{run=\"mon\"} "),
        std::string("bert_mfu_ratio{run=\"mon\"} "), std::string("bert_samples_per_second{run=\"mon\"} "),
        std::string("# TYPE bert_samples_seen_total counter\n"), "bert_worker_up" + labels1 + " 1\n",
        "bert_worker_resident_memory_bytes" + labels1 + " ", "bert_worker_heartbeat_age_seconds" + labels1 + " ",
        "bert_worker_step_time_seconds" + labels1 + " ", "bert_worker_straggler" + labels1 + " "}) {
    EXPECT_NE(metrics.body.find(expected), std::string::npos) << expected << "\n" << metrics.body;
  }

  // The coordinator writes metrics.jsonl: one line per step (log.every_steps
  // 1), with per-worker step times; and keeps status.json current.
  const std::vector<Json> lines = ReadJsonLines(work_ / "mon/metrics.jsonl");
  ASSERT_GE(lines.size(), step);
  EXPECT_EQ(lines[step - 1]["step"], step);
  EXPECT_EQ(lines[step - 1]["worker_step_ms"].size(), 2u);
  EXPECT_TRUE(lines[step - 1]["mlm_accuracy"].is_number());
  const Json history = Json::parse(Get(url, "/history").body);
  EXPECT_GE(history["step"].size(), step);
  EXPECT_TRUE(WaitFor([&] { return fs::exists(work_ / "mon/coordinator/status.json"); }, 5000));
  EXPECT_EQ(Json::parse(*ReadFile(work_ / "mon/coordinator/status.json"))["run"], "mon");
  Stop(run);
}

TEST_F(MonitoringTest, PromtoolAcceptsTheMetrics) {
  Run run = StartLong("prom", 0);
  const std::string url = StatusUrl("prom");
  ASSERT_FALSE(url.empty()) << ReadLog(*run.coordinator);
  // Before the workers are there (some values unknown) and while they train.
  const std::string early = Get(url, "/metrics").body;
  WaitForSteps(run, url, 3);
  const std::string running = Get(url, "/metrics").body;
  Stop(run);
  for (const std::string& text : {early, running}) {
    ASSERT_FALSE(text.empty());
    WriteText(work_ / "metrics.txt", text);
    const CommandResult check = RunCommand("promtool check metrics < " + (work_ / "metrics.txt"));
    EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << text;
    EXPECT_EQ(check.output, "") << "lint findings:\n" << check.output;
  }
  EXPECT_NE(running.find("bert_worker_compute_seconds{"), std::string::npos) << running;
}

TEST_F(MonitoringTest, ChromiumDrawsTheDashboardChartsWithData) {
  Run run = StartLong("dash", 0);
  const std::string url = StatusUrl("dash");
  ASSERT_FALSE(url.empty()) << ReadLog(*run.coordinator);
  WaitForSteps(run, url, 5);

  // The DOM after the page's scripts ran: charts of more than one point.
  const CommandResult dom = Chromium("--dump-dom", url);
  ASSERT_EQ(dom.exit_code, 0) << dom.output << *ReadFile(work_ / "chromium.log");
  const size_t at = dom.output.find("data-points=\"");
  ASSERT_NE(at, std::string::npos) << dom.output;
  EXPECT_GE(std::stoi(dom.output.substr(at + 13)), 5 * 4) << "loss, MLM, NSP and throughput over >= 5 steps";
  EXPECT_NE(dom.output.find("<polyline"), std::string::npos);
  EXPECT_NE(dom.output.find("<title>bert dash: step "), std::string::npos);
  EXPECT_NE(dom.output.find(">alive<"), std::string::npos) << "the worker table";

  // The pixels: each series' colour is on the screenshot.
  const std::string png = work_ / "dashboard.png";
  const CommandResult shot = Chromium("--screenshot=" + png, url);
  ASSERT_EQ(shot.exit_code, 0) << shot.output << *ReadFile(work_ / "chromium.log");
  Stop(run);
  Result<std::string> bytes = ReadFile(png);
  ASSERT_TRUE(bytes.ok()) << shot.output;
  const Image image = DecodePng(*bytes);
  ASSERT_EQ(image.width, 1200);
  ASSERT_EQ(image.height, 900);
  const size_t loss = CountColor(image, 0xd6, 0x27, 0x28), mlm = CountColor(image, 0x1f, 0x77, 0xb4),
               nsp = CountColor(image, 0xff, 0x7f, 0x0e), throughput = CountColor(image, 0x2c, 0xa0, 0x2c);
  // A line across a 320-pixel-wide plot is some 600 pixels; a legend
  // square alone is about 60.
  EXPECT_GT(loss, 300u);
  EXPECT_GT(mlm, 300u);
  EXPECT_GT(nsp, 300u);
  EXPECT_GT(throughput, 300u);
  const size_t white = CountColor(image, 255, 255, 255, 0);
  EXPECT_LT(white, image.rgb.size() / 3 - 5000) << "mostly blank";
}

TEST_F(MonitoringTest, AKilledWorkerShowsDeadWithinTheHeartbeatTimeout) {
  Run run = StartLong("dead", 0, {"--http-linger-ms", "4000"});
  const std::string url = StatusUrl("dead");
  ASSERT_FALSE(url.empty()) << ReadLog(*run.coordinator);
  WaitForSteps(run, url, 3);
  std::vector<pid_t> workers = ChildrenOf(run.workers->pid());
  ASSERT_EQ(workers.size(), 2u);
  const pid_t victim = RankOf(workers[0]) == 1 ? workers[0] : workers[1];
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  const auto killed_at = std::chrono::steady_clock::now();

  Json s;
  double age_seen_late = -1;
  ASSERT_TRUE(WaitFor(
      [&] {
        s = GetStatus(url);
        if (!s.is_object()) return false;
        if (s["workers"][1]["state"] == "late") age_seen_late = s["workers"][1]["heartbeat_age_s"].get<double>();
        return s["workers"][1]["state"] == "dead";
      },
      10000))
      << s.dump(2) << ReadLog(*run.coordinator);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  EXPECT_LT(seconds, 3.0 + 1.5) << "the heartbeat timeout is 3 s";
  EXPECT_GT(age_seen_late, 1.0) << "it was shown late (silent over two heartbeats) before dead";
  // A worker silent over the timeout shows dead at once; the server's loop
  // declares it (and ends the run) within its next turn.
  ASSERT_TRUE(WaitFor(
      [&] {
        s = GetStatus(url);
        return s.is_object() && s["state"] == "failed";
      },
      2000))
      << s.dump(2) << ReadLog(*run.coordinator);
  EXPECT_EQ(s["workers"][1]["state"], "dead");
  EXPECT_EQ(s["state"], "failed");
  EXPECT_EQ(s["exit_code"], kExitAborted);
  EXPECT_NE(s["exit_reason"].get<std::string>().find("rank 1"), std::string::npos) << s["exit_reason"];
  EXPECT_GE(s["workers"][1]["heartbeat_age_s"].get<double>(), 3.0);
  EXPECT_EQ(s["workers"][0]["state"], "aborted");
  const std::string metrics = Get(url, "/metrics").body;
  EXPECT_NE(metrics.find("bert_run_state{run=\"dead\",state=\"failed\"} 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("bert_worker_up{run=\"dead\",rank=\"1\",host=\"" + Hostname() + "\"} 0"), std::string::npos);

  // Once the coordinator is gone its last state is in the run directory.
  EXPECT_EQ(run.coordinator->Wait(15000), static_cast<int>(kExitAborted)) << ReadLog(*run.coordinator);
  run.workers->Wait(15000);
  const Json saved = Json::parse(*ReadFile(work_ / "dead/coordinator/status.json"));
  EXPECT_EQ(saved["state"], "failed");
  EXPECT_EQ(saved["workers"][1]["state"], "dead");
  const CommandResult cli = RunCommand(Bertctl() + " status " + (work_ / "dead"));
  EXPECT_EQ(cli.exit_code, 3) << cli.output;
  // An ended run reads as ended, not as a connection problem.
  EXPECT_NE(cli.output.find("run dead | failed | step"), std::string::npos) << cli.output;
  EXPECT_NE(cli.output.find("the run has ended and its coordinator has exited"), std::string::npos) << cli.output;
  EXPECT_EQ(cli.output.find("unreachable"), std::string::npos) << cli.output;
  EXPECT_NE(cli.output.find(" dead "), std::string::npos) << cli.output;
}

TEST_F(MonitoringTest, BertctlStatusOnALiveAFinishedAndAnUnreachableRun) {
  constexpr uint64_t kSteps = 8;
  Run run = Start("cli", WriteRun("cli", kMicroBatch, kSteps, 4), 2, {}, {"--http-bind", "127.0.0.1:0"});
  const std::string url = StatusUrl("cli");
  ASSERT_FALSE(url.empty()) << ReadLog(*run.coordinator);
  WaitForSteps(run, url, 2);
  // Live, from the URL in the run directory and from the URL itself.
  CommandResult live = RunCommand(Bertctl() + " status " + (work_ / "cli"));
  EXPECT_EQ(live.exit_code, 0) << live.output;
  EXPECT_NE(live.output.find("run cli | "), std::string::npos) << live.output;
  EXPECT_NE(live.output.find("coordinator " + url), std::string::npos) << live.output;
  EXPECT_EQ(live.output.find("last known"), std::string::npos) << live.output;
  live = RunCommand(Bertctl() + " status " + url + " --json");
  EXPECT_EQ(live.exit_code, 0) << live.output;
  const Json live_json = Json::parse(live.output, nullptr, false);
  ASSERT_TRUE(live_json.is_object()) << live.output;
  EXPECT_EQ(live_json["coordinator_reachable"], true);
  EXPECT_EQ(live_json["total_steps"], kSteps);
  Finish(std::move(run), "cli");

  // Finished: the coordinator is gone; the final state is in the run directory.
  CommandResult done = RunCommand(Bertctl() + " status " + (work_ / "cli"));
  EXPECT_EQ(done.exit_code, 0) << done.output;
  for (const std::string& expected :
       {std::string("run cli | done | step 8/8 (100.0%)"), std::string("checkpoint step-000008"),
        std::string("the run has ended and its coordinator has exited"), std::string("coordinator/status.json"),
        std::string("rank"),
        std::string("straggler"), Hostname()}) {
    EXPECT_NE(done.output.find(expected), std::string::npos) << expected << "\n" << done.output;
  }
  EXPECT_EQ(done.output.find("unreachable"), std::string::npos) << done.output;
  done = RunCommand(Bertctl() + " status " + (work_ / "cli") + " --json");
  const Json done_json = Json::parse(done.output, nullptr, false);
  ASSERT_TRUE(done_json.is_object()) << done.output;
  EXPECT_EQ(done_json["state"], "done");
  EXPECT_EQ(done_json["coordinator_reachable"], false);
  EXPECT_EQ(done_json["step"], kSteps);
  EXPECT_EQ(done_json["workers"].size(), 2u);
  // --watch stops by itself on a finished run.
  done = RunCommand("timeout 10 " + Bertctl() + " status " + (work_ / "cli") + " --watch --interval 0.2");
  EXPECT_EQ(done.exit_code, 0) << done.output;

  // A crashed coordinator (its last status.json says running): exit 3 with
  // the last known state; the bare URL has nothing to fall back on.
  Json crashed = Json::parse(*ReadFile(work_ / "cli/coordinator/status.json"));
  crashed["state"] = "running";
  crashed["step"] = 5;
  WriteText(work_ / "cli/coordinator/status.json", crashed.dump());
  const CommandResult gone = RunCommand(Bertctl() + " status " + (work_ / "cli"));
  EXPECT_EQ(gone.exit_code, 3) << gone.output;
  EXPECT_NE(gone.output.find("running (last known) | step 8/8"), std::string::npos)
      << "metrics.jsonl is newer than status.json\n" << gone.output;
  EXPECT_NE(gone.output.find("coordinator unreachable (" + url), std::string::npos) << gone.output;
  const CommandResult bare = RunCommand(Bertctl() + " status " + url);
  EXPECT_EQ(bare.exit_code, 1) << bare.output;
  EXPECT_NE(bare.output.find("coordinator unreachable"), std::string::npos) << bare.output;
  EXPECT_EQ(RunCommand(Bertctl() + " status " + (work_ / "no-such-run")).exit_code, 2);
}

}  // namespace
}  // namespace bert::testing
