// bertctl: the one command people type. Subcommands live in cli/cmd_*.cc.
#include <iostream>

#include "cli/command.h"
#include "cli/usage_errors.h"
#include "common/logging.h"

int main(int argc, char** argv) {
  bert::InitLogging(argv[0]);
  CLI::App app{"bertctl: distributed BERT pretraining and fine-tuning.\n"
               "Build a vocabulary, load a corpus into RocksDB, train, fine-tune and export."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "bertctl 0.1.0");
  std::vector<std::pair<CLI::App*, std::function<int()>>> runners;
  for (auto& setup : bert::cli::CommandRegistry::All()) {
    size_t before = app.get_subcommands({}).size();
    std::function<int()> run = setup(app);
    auto subs = app.get_subcommands({});
    if (subs.size() > before) runners.emplace_back(subs.back(), std::move(run));
  }
  // Every usage mistake exits 2 with one line (cli/usage_errors.h).
  if (int code = bert::cli::CheckCommandName(app, argc, argv); code >= 0) return code;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return bert::cli::HandleParseError(app, e, argc, argv);
  }
  for (auto& [sub, run] : runners) {
    if (sub->parsed()) return run();
  }
  std::cerr << "bertctl: no command given; see bertctl --help\n";
  return 2;
}
