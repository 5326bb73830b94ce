#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests and for trying `vcmbench sweep
# --launcher slurm` before a real cluster: munged, slurmctld and slurmd on localhost, with a
# slurm.conf of their own (nothing under /etc/slurm is touched).
#
#   sudo bash scripts/slurm_local.sh install   # Debian's slurm-wlm and munge (apt)
#   sudo bash scripts/slurm_local.sh start     # prints `export SLURM_CONF=...`: source it, or eval it
#   sudo bash scripts/slurm_local.sh status
#   sudo bash scripts/slurm_local.sh stop
#
# The daemons run as root (SlurmUser=root) with ProctrackType=proctrack/linuxproc and
# TaskPlugin=task/none: no cgroups, which containers and CI machines often lack. One partition,
# `debug`, holds this node with every CPU and its memory (slurmd -C); a job that asks for no memory
# gets its CPUs' share (DefMemPerCPU), so jobs of one CPU each run side by side. State, logs and the config
# live in $VCMBENCH_SLURM_DIR (default /tmp/vcmbench-slurm).
set -euo pipefail
DIR=${VCMBENCH_SLURM_DIR:-/tmp/vcmbench-slurm}
CONF=$DIR/slurm.conf

die() { echo "slurm_local.sh: $*" >&2; exit 2; }

install() {
  command -v apt-get >/dev/null || die "no apt-get: install slurm-wlm and munge with your package manager"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
  local node cpus mem
  node=$(hostname -s)
  cpus=$(nproc)
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  cat > "$CONF" <<EOF
ClusterName=vcmbench-local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
MinJobAge=600
KillWait=5
InactiveLimit=0
DefMemPerCPU=$((mem / cpus))
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  munge -n >/dev/null 2>&1 && return 0  # already up
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  su -s /bin/sh munge -c /usr/sbin/munged 2>/dev/null || /usr/sbin/munged --force
  for _ in $(seq 40); do
    munge -n >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  die "munged did not start (its log: /var/log/munge/munged.log)"
}

start() {
  command -v slurmctld >/dev/null || die "slurmctld not found: run \`sudo bash $0 install\` (Debian's slurm-wlm and munge)"
  [ "$(id -u)" = 0 ] || die "start the local cluster as root (its daemons run as root)"
  start_munge
  stop_daemons
  write_conf
  slurmctld -f "$CONF"
  slurmd -f "$CONF"
  for _ in $(seq 60); do
    if SLURM_CONF=$CONF sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "export SLURM_CONF=$CONF"
      return 0
    fi
    sleep 0.5
  done
  SLURM_CONF=$CONF sinfo >&2 || true
  tail -n 5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
  die "the node did not come up within 30 s (logs: $DIR/log)"
}

stop_daemons() {
  for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
  for _ in $(seq 40); do
    pgrep -f "slurm(ctld|d) -f $CONF" >/dev/null || return 0
    sleep 0.25
  done
  pkill -9 -f "slurm(ctld|d) -f $CONF" || true
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_daemons ;;
  status) SLURM_CONF=$CONF sinfo ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
