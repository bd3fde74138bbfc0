#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the preemption, requeue and time-limit
# tests (tests/test_slurm.py) and for trying `hydra/launcher=slurm` without a cluster: Debian's
# slurm-wlm and munge, one node (this host, 2 CPUs), one partition `debug`, no accounting.
# Idempotent: run it again and it changes nothing (it restarts only what is down, restarts the
# controller only when slurm.conf changed). Needs root (or sudo). Prints one status line.
#
# Short waits for tests: SLURM holds a requeued job for the credential lifetime (its BeginTime;
# AuthInfo=cred_expire, 120 s by default) and starts pending jobs on its scheduling cycle
# (sched_interval, 60 s); here 5 s and 2 s, so a requeued job starts again ~7 s after the requeue.
# A real cluster keeps its own values: nothing in trainlab depends on them.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

HOST="$(hostname -s)"
CPUS="${TRAINLAB_SLURM_CPUS:-$(nproc)}"
# What jobs may ask for (sbatch refuses more): 90% of this machine's memory.
MEMORY_MB="${TRAINLAB_SLURM_MEMORY_MB:-$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)}"
CONF=/etc/slurm/slurm.conf

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    log="$(mktemp)"
    if ! { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        as_root apt-get install -y -qq slurm-wlm munge; } >"$log" 2>&1; then
        cat "$log" >&2
        exit 1
    fi
    rm -f "$log"
fi

# munge: the key every SLURM daemon and client authenticates with.
if ! as_root test -s /etc/munge/munge.key; then
    as_root mkdir -p /etc/munge
    as_root dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
as_root chown munge:munge /etc/munge/munge.key
as_root chmod 400 /etc/munge/munge.key
as_root mkdir -p /run/munge /var/log/munge /var/lib/munge
as_root chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    # As root munged refuses to start without --force (it warns and runs).
    as_root munged --force 2>/dev/null || as_root munged --force
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

wanted="$(mktemp)"
trap 'rm -f "$wanted"' EXIT
cat >"$wanted" <<CONF
# Written by trainlab's scripts/ci-slurm.sh: a single-node cluster for tests.
ClusterName=trainlab
SlurmctldHost=$HOST
AuthType=auth/munge
AuthInfo=cred_expire=5
SchedulerParameters=sched_interval=2
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=300
NodeName=$HOST CPUs=$CPUS RealMemory=$MEMORY_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
as_root mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
changed=0
if ! as_root cmp -s "$wanted" "$CONF"; then
    as_root cp "$wanted" "$CONF"
    as_root chmod 644 "$CONF"
    changed=1
fi

running() { pgrep -x "$1" >/dev/null 2>&1; }
controller_up() { scontrol ping 2>/dev/null | grep -q "is UP"; }
if ! controller_up; then
    # One that is still shutting down (or hung) answers nothing: wait for it to go first.
    for _ in $(seq 40); do running slurmctld || break; sleep 0.25; done
    running slurmctld || as_root slurmctld
elif [ "$changed" = 1 ]; then
    # `scontrol reconfigure` leaves some settings (AuthInfo) as they were: restart it (jobs
    # and their state are kept in StateSaveLocation).
    as_root scontrol shutdown slurmctld
    for _ in $(seq 40); do running slurmctld || break; sleep 0.25; done
    as_root slurmctld
fi
if ! running slurmd; then
    as_root slurmd
elif [ "$changed" = 1 ]; then
    as_root pkill -x slurmd || true  # slurmd reads its node's shape only when it starts
    sleep 1
    as_root slurmd
fi

# Wait until the controller answers and the node takes jobs.
state=""
for _ in $(seq 60); do
    state="$(sinfo --noheader --nodes="$HOST" --format=%T 2>/dev/null | head -1 || true)"
    case "$state" in
        idle* | mixed* | allocated* | completing*) break ;;
        drain* | down*) as_root scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
done
case "$state" in
    idle* | mixed* | allocated* | completing*) ;;
    *)
        echo "SLURM did not come up (node $HOST is '${state:-not answering}'); see /var/log/slurm/" >&2
        exit 1
        ;;
esac
version="$(sinfo --version | awk '{print $2}')"
echo "SLURM $version is up: cluster trainlab, node $HOST ($CPUS CPUs, $state), partition debug"
