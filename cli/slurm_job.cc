#include "cli/slurm_job.h"

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/launcher.h"
#include "cli/sbatch_template.h"
#include "common/file_util.h"
#include "common/process.h"

namespace bert::cli {
namespace {

bool AllDigits(const std::string& text) {
  return !text.empty() && text.size() <= 9 &&
         std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

std::string Trim(const std::string& text) {
  const size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
}

// Replaces every {{KEY}}; a line that was only a placeholder and renders
// empty (an optional #SBATCH line) is dropped.
std::string Render(const std::string& text, const std::vector<std::pair<std::string, std::string>>& values) {
  std::istringstream in(text);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    const bool only_placeholder = line.size() > 4 && line.rfind("{{", 0) == 0 && line.find("}}") == line.size() - 2;
    for (const auto& [key, value] : values) {
      const std::string pattern = "{{" + key + "}}";
      for (size_t at = line.find(pattern); at != std::string::npos; at = line.find(pattern, at + value.size())) {
        line.replace(at, pattern.size(), value);
      }
    }
    if (only_placeholder && line.empty()) continue;
    out += line + "\n";
  }
  return out;
}

}  // namespace

Result<int64_t> ParseSlurmTime(const std::string& text) {
  const Status bad = Status::InvalidArgument("--time: '" + text +
                                             "' is not a Slurm time limit (minutes, M:S, H:M:S, D-H, D-H:M or "
                                             "D-H:M:S, e.g. 04:00:00)");
  std::string rest = text;
  int64_t days = -1;
  const size_t dash = rest.find('-');
  if (dash != std::string::npos) {
    if (!AllDigits(rest.substr(0, dash))) return bad;
    days = std::stoll(rest.substr(0, dash));
    rest = rest.substr(dash + 1);
  }
  std::vector<int64_t> parts;
  std::istringstream in(rest);
  for (std::string part; std::getline(in, part, ':');) {
    if (!AllDigits(part)) return bad;
    parts.push_back(std::stoll(part));
  }
  if (parts.empty() || parts.size() > 3 || (!rest.empty() && rest.back() == ':')) return bad;
  int64_t seconds = 0;
  if (days >= 0) {  // D-H, D-H:M, D-H:M:S
    const int64_t h = parts[0], m = parts.size() > 1 ? parts[1] : 0, s = parts.size() > 2 ? parts[2] : 0;
    if (h >= 24 || m >= 60 || s >= 60) return bad;
    seconds = ((days * 24 + h) * 60 + m) * 60 + s;
  } else if (parts.size() == 1) {  // M
    seconds = parts[0] * 60;
  } else if (parts.size() == 2) {  // M:S
    if (parts[1] >= 60) return bad;
    seconds = parts[0] * 60 + parts[1];
  } else {  // H:M:S
    if (parts[1] >= 60 || parts[2] >= 60) return bad;
    seconds = (parts[0] * 60 + parts[1]) * 60 + parts[2];
  }
  if (seconds <= 0) return Status::InvalidArgument("--time: '" + text + "' is no time at all; give a positive limit");
  return seconds;
}

Status ValidateResources(const SlurmResources& r) {
  if (r.nodes < 1 || r.nodes > 100000) return Status::InvalidArgument("--nodes: must be in [1, 100000], got " + std::to_string(r.nodes));
  if (r.gpus_per_node > 64) return Status::InvalidArgument("--gpus-per-node: must be in [0, 64], got " + std::to_string(r.gpus_per_node));
  if (r.tasks_per_node < 1 || r.tasks_per_node > 1024) {
    return Status::InvalidArgument("--tasks-per-node: must be in [1, 1024], got " + std::to_string(r.tasks_per_node));
  }
  if (r.cpus_per_task < 1 || r.cpus_per_task > 1024) {
    return Status::InvalidArgument("--cpus-per-task: must be in [1, 1024], got " + std::to_string(r.cpus_per_task));
  }
  Result<int64_t> seconds = ParseSlurmTime(r.time);
  if (!seconds.ok()) return seconds.status();
  if (r.signal_before_s >= *seconds) {
    return Status::InvalidArgument("--signal-before-s: " + std::to_string(r.signal_before_s) +
                                   " s is not less than --time " + r.time + " (" + std::to_string(*seconds) +
                                   " s): the job would be told to stop before it starts");
  }
  auto name_ok = [](const std::string& name) {
    return name.find_first_of(" \t\n'\"\\$`;&|<>") == std::string::npos && name.size() <= 128;
  };
  if (!name_ok(r.partition)) return Status::InvalidArgument("--partition: '" + r.partition + "' is not a partition name");
  if (!name_ok(r.account)) return Status::InvalidArgument("--account: '" + r.account + "' is not an account name");
  if (uint64_t{r.nodes} * (r.gpus_per_node > 0 ? r.gpus_per_node : r.tasks_per_node) > 65536) {
    return Status::InvalidArgument("--nodes x ranks per node: at most 65536 worker ranks");
  }
  return Status::Ok();
}

uint32_t WorldSize(const SlurmResources& r) { return r.nodes * (r.gpus_per_node > 0 ? r.gpus_per_node : r.tasks_per_node); }

std::vector<std::string> SrunResourceArgs(const SlurmResources& r) {
  std::vector<std::string> args = {"--nodes=" + std::to_string(r.nodes)};
  if (r.gpus_per_node > 0) {
    args.push_back("--ntasks-per-node=" + std::to_string(r.gpus_per_node));
    // Every rank sees all the node's GPUs (--gpus-per-task=1 would hide them
    // from each other: no NVLink peer access for NCCL) and takes the one of
    // its SLURM_LOCALID (worker/train/device.h).
    args.push_back("--gpus-per-node=" + std::to_string(r.gpus_per_node));
    args.push_back("--gpu-bind=none");
  } else {
    args.push_back("--ntasks-per-node=" + std::to_string(r.tasks_per_node));
  }
  args.push_back("--cpus-per-task=" + std::to_string(r.cpus_per_task));  // srun does not inherit it from sbatch
  return args;
}

std::string RenderSbatch(const SbatchJob& job) {
  const SlurmResources& r = job.resources;
  const std::vector<std::string> srun_args = SrunResourceArgs(r);
  SrunSpec srun;
  srun.workers = WorldSize(r);
  srun.extra = srun_args;
  srun.rank_log_pattern = job.run_dir + "/slurm/job-%j-rank-%t.log";
  const std::string srun_line = ShellJoin(SrunArgv(srun, {job.worker_bin, "--config", job.run_dir + "/config.yaml",
                                                          "--coordinator", "tcp://FIRST_NODE:PORT"}));
  std::vector<std::string> pretrain = {job.bertctl, "pretrain"};
  pretrain.insert(pretrain.end(), job.pretrain_args.begin(), job.pretrain_args.end());
  std::string srun_flags;
  for (const std::string& arg : srun_args) srun_flags += (srun_flags.empty() ? "" : " ") + arg;
  pretrain.insert(pretrain.end(), {"--workers", std::to_string(WorldSize(r)), "--launcher", "srun", "--srun-args",
                                   srun_flags, "--bind", "tcp://0.0.0.0:*"});
  return Render(kSbatchTemplate,
                {{"HEADER", "Rendered by `bertctl submit` from slurm/pretrain.sbatch.in; resubmit with `bertctl resume " +
                                job.run_dir + "`."},
                 {"JOB_NAME", job.job_name},
                 {"NODES", std::to_string(r.nodes)},
                 {"TASKS_PER_NODE", std::to_string(r.gpus_per_node > 0 ? r.gpus_per_node : r.tasks_per_node)},
                 {"CPUS_PER_TASK", std::to_string(r.cpus_per_task)},
                 {"GPUS_LINE", r.gpus_per_node > 0 ? "#SBATCH --gpus-per-node=" + std::to_string(r.gpus_per_node) : ""},
                 {"GPU_ENV", r.gpus_per_node > 0 ? "# GPU mode: NCCL reports its warnings in each rank's log; set NCCL_DEBUG=INFO to see the\n"
                                                   "# transports it picks (NVLink, InfiniBand, sockets).\n"
                                                   "export NCCL_DEBUG=${NCCL_DEBUG:-WARN}"
                                                 : ""},
                 {"TIME", r.time},
                 {"PARTITION_LINE", r.partition.empty() ? "" : "#SBATCH --partition=" + r.partition},
                 {"ACCOUNT_LINE", r.account.empty() ? "" : "#SBATCH --account=" + r.account},
                 {"RUN_DIR", job.run_dir},
                 {"WORKDIR", job.workdir},
                 {"SIGNAL_S", std::to_string(r.signal_before_s)},
                 {"SRUN_LINE", srun_line},
                 {"PRETRAIN_COMMAND", ShellJoin(pretrain)}});
}

std::string SlurmRecordPath(const std::string& run_dir) { return run_dir + "/slurm.json"; }

Result<SlurmRecord> ReadSlurmRecord(const std::string& run_dir) {
  const std::string path = SlurmRecordPath(run_dir);
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return Status::NotFound(path + ": no Slurm job record (the run was not submitted with bertctl submit)");
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("job_ids") || !j["job_ids"].is_array()) {
    return Status::InvalidArgument(path + ": not a Slurm job record (expected an object with a job_ids array)");
  }
  SlurmRecord record;
  record.job_name = j.value("job_name", "");
  record.script = j.value("script", "");
  for (const nlohmann::json& id : j["job_ids"]) {
    if (!id.is_string() || !AllDigits(id.get<std::string>())) {
      return Status::InvalidArgument(path + ": field job_ids: " + id.dump() + " is not a job id");
    }
    record.job_ids.push_back(id.get<std::string>());
  }
  return record;
}

Status WriteSlurmRecord(const std::string& run_dir, const SlurmRecord& record) {
  const nlohmann::json j = {{"job_name", record.job_name}, {"script", record.script}, {"job_ids", record.job_ids}};
  return WriteFileAtomic(SlurmRecordPath(run_dir), j.dump(2) + "\n");
}

Result<CommandOutput> RunSlurmCommand(const std::vector<std::string>& argv, bool merge_stderr) {
  if (!FindExecutable(argv.at(0))) {
    return Status::NotFound(argv[0] + " not found on PATH: install the Slurm client (apt-get install slurm-client) "
                                      "or run on a cluster's login node");
  }
  FILE* pipe = ::popen((ShellJoin(argv) + (merge_stderr ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
  if (pipe == nullptr) return Status::IoError("cannot run " + argv[0]);
  CommandOutput result;
  std::array<char, 4096> buffer;
  for (size_t n; (n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0;) result.output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

Status CheckPartition(const std::string& partition) {
  Result<CommandOutput> listed = RunSlurmCommand({"sinfo", "-h", "-o", "%R"});
  if (!listed.ok()) return listed.status();
  if (listed->exit_code != 0) {
    return Status::FailedPrecondition("sinfo failed (is slurmctld reachable?): " + Trim(listed->output));
  }
  std::istringstream in(listed->output);
  std::string known;
  for (std::string name; std::getline(in, name);) {
    if (Trim(name) == partition) return Status::Ok();
    known += (known.empty() ? "" : ", ") + Trim(name);
  }
  return Status::FailedPrecondition("--partition: no partition '" + partition + "' on this cluster (sinfo lists: " +
                                    (known.empty() ? "none" : known) + ")");
}

Result<std::string> SubmitScript(const std::string& script_path) {
  Result<CommandOutput> submitted = RunSlurmCommand({"sbatch", "--parsable", script_path});
  if (!submitted.ok()) return submitted.status();
  // --parsable: "JOBID" or "JOBID;CLUSTER"; warnings may come before it.
  std::string last;
  std::istringstream in(submitted->output);
  for (std::string line; std::getline(in, line);) {
    if (!Trim(line).empty()) last = Trim(line);
  }
  const std::string id = last.substr(0, last.find(';'));
  if (submitted->exit_code != 0 || !AllDigits(id)) {
    return Status::FailedPrecondition("sbatch " + script_path + " failed (exit " +
                                      std::to_string(submitted->exit_code) + "): " + last);
  }
  return id;
}

Result<SlurmJobState> QueryJob(const std::string& job_id) {
  SlurmJobState job;
  Result<CommandOutput> queued = RunSlurmCommand({"squeue", "-h", "-j", job_id, "-o", "%T|%r"}, false);
  if (!queued.ok()) return queued.status();
  if (queued->exit_code == 0 && !Trim(queued->output).empty()) {
    const std::string line = Trim(queued->output);
    job.state = line.substr(0, line.find('|'));
    job.reason = line.find('|') == std::string::npos ? "" : line.substr(line.find('|') + 1);
    if (job.reason == "None") job.reason.clear();
    job.source = "squeue";
    return job;
  }
  // Finished jobs: slurmctld keeps them for MinJobAge; then accounting.
  Result<CommandOutput> shown = RunSlurmCommand({"scontrol", "show", "job", "-o", job_id}, false);
  if (shown.ok() && shown->exit_code == 0) {
    auto field = [&](const std::string& key) {
      const size_t at = shown->output.find(" " + key + "=");
      if (at == std::string::npos) return std::string();
      const size_t begin = at + key.size() + 2;
      return shown->output.substr(begin, shown->output.find_first_of(" \n", begin) - begin);
    };
    job.state = field("JobState");
    job.reason = field("Reason");
    if (job.reason == "None") job.reason.clear();
    job.source = "scontrol";
    if (!job.state.empty()) return job;
  }
  Result<CommandOutput> accounted = RunSlurmCommand({"sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"}, false);
  if (accounted.ok() && accounted->exit_code == 0 && !Trim(accounted->output).empty()) {
    std::istringstream in(accounted->output);
    std::getline(in, job.state);
    job.state = Trim(job.state);
    job.source = "sacct";
  }
  return job;  // state "" when Slurm no longer knows the job
}

Result<std::string> ResubmitRun(const std::string& run_dir) {
  Result<SlurmRecord> record = ReadSlurmRecord(run_dir);
  if (!record.ok()) return record.status();
  if (record->script.empty() || !ReadFile(record->script).ok()) {
    return Status::NotFound(SlurmRecordPath(run_dir) + ": field script: batch script '" + record->script +
                            "' is missing; submit the run again with bertctl submit");
  }
  Result<std::string> id = SubmitScript(record->script);
  if (!id.ok()) return id.status();
  record->job_ids.push_back(*id);
  BERT_RETURN_IF_ERROR(WriteSlurmRecord(run_dir, *record));
  return id;
}

std::optional<RunJobStatus> RunSlurmStatus(const std::string& run_dir) {
  Result<SlurmRecord> record = ReadSlurmRecord(run_dir);
  if (!record.ok() && record.status().code() == Status::Code::kNotFound) return std::nullopt;
  RunJobStatus status;
  if (!record.ok()) {
    status.error = record.status().message();
    return status;
  }
  if (record->job_ids.empty()) {
    status.error = SlurmRecordPath(run_dir) + ": no job id recorded";
    return status;
  }
  status.job_id = record->job_ids.back();
  status.job_name = record->job_name;
  Result<SlurmJobState> state = QueryJob(status.job_id);
  if (!state.ok()) {
    status.error = state.status().message();
  } else {
    status.job = *state;
  }
  return status;
}

}  // namespace bert::cli
