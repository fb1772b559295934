#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, for tests and demos (Debian's
# slurm-wlm + munge, installed by scripts/setup.sh). Needs root.
#
#   scripts/slurm_local.sh start    write the config, start munged, slurmctld, slurmd; wait until the node is idle
#   scripts/slurm_local.sh stop     stop them (the config stays)
#   scripts/slurm_local.sh status   say whether the cluster answers (exit 0) or not (exit 1)
#
# start is idempotent: a cluster that already answers with the node idle or
# busy is left alone. The node is `hostname -s` with every CPU (nproc) and
# the machine's memory, in one partition `debug` (Default=YES); no cgroups
# (proctrack/linuxproc, task/none: works in containers), MpiDefault=pmix,
# JobRequeue=1, no accounting. State and logs: $BERT_SLURM_DIR (default
# /tmp/bert-slurm). The config goes to /etc/slurm/slurm.conf, where
# Debian's Slurm commands look for it.
set -euo pipefail

STATE_DIR="${BERT_SLURM_DIR:-/tmp/bert-slurm}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
NODE="$(hostname -s)"
START_TIMEOUT_S="${BERT_SLURM_START_TIMEOUT_S:-60}"

die() { echo "slurm_local.sh: $*" >&2; exit 1; }

need_root() { [[ "$(id -u)" == 0 ]] || die "must run as root (munged, slurmctld and slurmd are started as root)"; }

# Prints the node's state as sinfo sees it ("idle", "mixed", ...); empty if
# the controller does not answer.
node_state() { timeout 5 sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n1 || true; }

write_config() {
  local cpus memory_mb
  # Never overwrite a real cluster's configuration.
  if [[ -f "$CONF" ]] && ! grep -q '^# Written by bert scripts/slurm_local.sh' "$CONF"; then
    die "$CONF exists and was not written by this script (a real cluster's?): not touching it"
  fi
  cpus="$(nproc)"
  memory_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
  mkdir -p "$CONF_DIR" "$STATE_DIR/ctld" "$STATE_DIR/d" "$STATE_DIR/log"
  chmod 755 "$STATE_DIR"
  local temp="$CONF.new"
  cat >"$temp" <<EOF
# Written by bert scripts/slurm_local.sh: a one-node cluster on localhost.
ClusterName=bert-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job may start again cred_expire s after its end (default 120):
# short, so that a preempted test job resumes within seconds.
AuthInfo=cred_expire=10
CredType=cred/munge
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/d
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
JobRequeue=1
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
KillWait=10
InactiveLimit=0
SlurmdTimeout=60
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  if cmp -s "$temp" "$CONF"; then
    rm -f "$temp"
    return 1  # unchanged
  fi
  mv "$temp" "$CONF"
  # No cgroups are used (proctrack/linuxproc, task/none); the file keeps
  # slurmd from probing for a cgroup mount it would not find in a container.
  printf 'CgroupPlugin=cgroup/v1\nCgroupAutomount=no\nConstrainCores=no\nConstrainRAMSpace=no\n' \
    >"$CONF_DIR/cgroup.conf.tmp.$$"
  mv "$CONF_DIR/cgroup.conf.tmp.$$" "$CONF_DIR/cgroup.conf"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  [[ -f /etc/munge/munge.key ]] || {
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    chmod 400 /etc/munge/munge.key
  }
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge 2>/dev/null || true
  # As root, munged refuses to start without --force (it wants its own user).
  if id munge >/dev/null 2>&1; then
    su -s /bin/sh munge -c "/usr/sbin/munged" 2>/dev/null || /usr/sbin/munged --force
  else
    /usr/sbin/munged --force
  fi
  for _ in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "munged did not start (see /var/log/munge/munged.log)"
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  need_root
  command -v slurmctld >/dev/null || die "slurmctld not found: install slurm-wlm and munge (scripts/setup.sh)"
  local state changed=0
  write_config && changed=1
  state="$(node_state)"
  if [[ $changed == 0 && ( "$state" == idle* || "$state" == mixed* || "$state" == allocated* ) ]]; then
    echo "slurm_local.sh: running; node $NODE is $state"
    return 0
  fi
  [[ $changed == 1 && -n "$state" ]] && stop  # another config: restart with this one
  start_munge
  pid_alive "$STATE_DIR/slurmctld.pid" || slurmctld -i  # -i: ignore saved state that does not fit the config
  pid_alive "$STATE_DIR/slurmd.pid" || slurmd
  local deadline=$((SECONDS + START_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    state="$(node_state)"
    if [[ "$state" == idle* || "$state" == mixed* || "$state" == allocated* ]]; then
      echo "slurm_local.sh: started; node $NODE is $state (log: $STATE_DIR/log)"
      return 0
    fi
    if [[ "$state" == down* || "$state" == drain* ]]; then
      scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 0.5
  done
  echo "slurm_local.sh: node $NODE not idle within ${START_TIMEOUT_S} s (sinfo: '${state:-no answer}')" >&2
  tail -n 5 "$STATE_DIR/log/slurmctld.log" "$STATE_DIR/log/slurmd.log" >&2 2>/dev/null || true
  exit 1
}

stop_pid_file() {
  local file="$1" name="$2"
  if pid_alive "$file"; then
    local pid
    pid="$(cat "$file")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    echo "slurm_local.sh: stopped $name (pid $pid)"
  fi
}

stop() {
  need_root
  stop_pid_file "$STATE_DIR/slurmd.pid" slurmd
  stop_pid_file "$STATE_DIR/slurmctld.pid" slurmctld
}

status() {
  local state
  state="$(node_state)"
  if [[ -n "$state" ]]; then
    echo "slurm_local.sh: running; node $NODE is $state"
  else
    echo "slurm_local.sh: not running (no answer from slurmctld)"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: scripts/slurm_local.sh {start|stop|status}" ;;
esac
