#!/usr/bin/env bash
# Start (or check) a one-node SLURM cluster on localhost, for the `cluster` tests and CI.
#
#   sudo tests/cluster/start_slurm.sh          # idempotent: a healthy cluster is left alone
#
# Debian/Ubuntu only (apt): installs slurm-wlm + munge if missing, creates a munge key,
# starts munged, writes /etc/slurm/slurm.conf for this host (its name, CPUs and memory as
# `slurmd -C` reports them), SelectType=select/cons_tres, ProctrackType=proctrack/linuxproc,
# TaskPlugin=task/none, no accounting storage (so Snakemake must use
# `--slurm-status-command squeue` and `--slurm-no-account`), then slurmctld and slurmd, and
# waits until `sinfo` shows the node idle. Exit codes: 0 ready, 2 cannot run here (not root /
# no apt; a reason is printed), 1 the cluster failed to come up (logs are printed).
set -euo pipefail

PARTITION="${EMOHEAD_SLURM_PARTITION:-debug}"
WAIT_S="${EMOHEAD_SLURM_WAIT_S:-90}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm
RUN_DIR=/run/slurm

say() { echo "[start_slurm] $*"; }

if [[ "$(id -u)" != 0 ]]; then
    say "SKIP: needs root (starts system daemons)"; exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "SKIP: apt-get not available (Debian/Ubuntu slurm-wlm packages needed)"; exit 2
fi

# 1. Packages (only when missing: a second run does not touch apt).
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    say "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || { say "SKIP: apt-get update failed (no package mirror)"; exit 2; }
    # policy-rc.d in containers denies service starts during install; we start daemons below.
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
        || { say "SKIP: apt-get install slurm-wlm munge failed"; exit 2; }
fi

# 2. munge: key (0400, owned by munge) and daemon.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating munge key"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    if [[ -f /run/munge/munged.pid ]]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
        rm -f /run/munge/munged.pid
    fi
    rm -f /run/munge/munge.socket.2*
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 1 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.5
    done
    munge -n | unmunge >/dev/null || { say "munged did not start"; exit 1; }
fi

# 3. slurm.conf for this host.
install -d -m 0755 "$CONF_DIR" "$LOG_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd" "$RUN_DIR"
HOST="$(hostname -s)"
# `slurmd -C` prints this node's line (CPUs, sockets, cores, threads, RealMemory).
NODE_LINE="$(slurmd -C | grep '^NodeName=' | sed -E 's/ UpTime=.*//')"
[[ -n "$NODE_LINE" ]] || { say "slurmd -C printed no node line"; exit 1; }
NEW_CONF="$(mktemp)"
cat >"$NEW_CONF" <<EOF
# Written by tests/cluster/start_slurm.sh: one-node test cluster on $HOST.
ClusterName=emohead-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# No accounting storage: Snakemake queries job states with squeue, so finished jobs must stay
# visible for a while (MinJobAge) after they end.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
ReturnToService=2
SlurmdTimeout=120
InactiveLimit=0
KillWait=10
$NODE_LINE State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

daemon_alive() {  # pidfile
    [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

restart=0
if [[ ! -f "$CONF" ]] || ! cmp -s "$NEW_CONF" "$CONF"; then
    say "writing $CONF"
    install -m 0644 "$NEW_CONF" "$CONF"
    restart=1
fi
rm -f "$NEW_CONF"
# Debian's slurm-wlm expects a cgroup.conf only with cgroup plugins; none are used here.

if ((restart)); then
    for pf in "$RUN_DIR/slurmd.pid" "$RUN_DIR/slurmctld.pid"; do
        if daemon_alive "$pf"; then
            kill "$(cat "$pf")" || true
            for _ in $(seq 1 30); do daemon_alive "$pf" || break; sleep 0.5; done
        fi
    done
fi

# 4. Daemons.
if ! daemon_alive "$RUN_DIR/slurmctld.pid"; then
    say "starting slurmctld"
    /usr/sbin/slurmctld -i
fi
if ! daemon_alive "$RUN_DIR/slurmd.pid"; then
    say "starting slurmd"
    /usr/sbin/slurmd
fi

# 5. Wait for the node to be idle (resume it if slurmctld remembers it as down/drained).
state=""
for i in $(seq 1 "$WAIT_S"); do
    state="$(sinfo -h -N -n "$HOST" -o '%t' 2>/dev/null | head -n1 | tr -d '*' || true)"
    case "$state" in
        idle|mix|alloc)
            say "ready: node $HOST is $state in partition $PARTITION ($NODE_LINE)"
            exit 0 ;;
        down|drain|drng|fail)
            if ((i % 5 == 1)); then
                scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true
            fi ;;
    esac
    sleep 1
done
say "node $HOST not idle after ${WAIT_S}s (state: '${state:-none}')"
sinfo -N -l || true
tail -n 30 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" 2>/dev/null || true
exit 1
