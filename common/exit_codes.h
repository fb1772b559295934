// The exit codes of bert-coordinator, bert-worker and bertctl pretrain,
// which launchers (bertctl, the sbatch script, an operator's own) act on.
// A header of its own: bertctl includes it without the protocol's
// generated code (common/protocol.h includes it too).
#pragma once

namespace bert {

enum ExitCode : int {
  kExitOk = 0,               // the run is complete
  kExitError = 1,            // I/O, corpus or internal error
  kExitUsage = 2,            // bad flag or config value
  kExitAborted = 3,          // coordinator: declared a worker dead and told the others to abort;
                             // worker: the coordinator ordered an abort
  kExitCoordinatorLost = 4,  // worker: the coordinator went silent or never answered Register
  kExitRegistration = 5,     // coordinator: not all ranks registered in time;
                             // worker: registration refused
  kExitInterrupted = 6,      // SIGINT or SIGTERM
  kExitBadData = 7,          // a corrupt corpus or checkpoint that no retry can fix
  kExitPreempted = 8,        // SIGUSR1 (preemption): a checkpoint is committed and the run resumes from it;
                             // worker: the coordinator stopped the run for it
  kExitRollback = 10,        // worker: a step's loss or gradient was anomalous (train.anomaly); the skip is
                             // recorded and the run restarts from the last committed checkpoint
  kExitDiverged = 11,        // worker: more anomalies than train.anomaly.max_skips allow: the run diverges
};

}  // namespace bert
