// bertctl subcommands register themselves here; main() only dispatches.
// Each cli/cmd_*.cc defines one (or a few) subcommands with
// BERT_REGISTER_COMMAND, so adding a command touches no other file.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace bert::cli {

// Adds the subcommand to `app` and returns the function to run when it was
// chosen. The function returns the process exit code.
using CommandSetup = std::function<std::function<int()>(CLI::App& app)>;

struct CommandRegistry {
  static std::vector<CommandSetup>& All() {
    static std::vector<CommandSetup> commands;
    return commands;
  }
};

struct CommandRegistrar {
  explicit CommandRegistrar(CommandSetup setup) { CommandRegistry::All().push_back(std::move(setup)); }
};

}  // namespace bert::cli

#define BERT_CONCAT_INNER(a, b) a##b
#define BERT_CONCAT(a, b) BERT_CONCAT_INNER(a, b)
#define BERT_REGISTER_COMMAND(setup_fn) \
  static ::bert::cli::CommandRegistrar BERT_CONCAT(bert_command_registrar_, __LINE__)(setup_fn)
