#!/usr/bin/env bash
# Starts a one-node Slurm on this machine for the Slurm executor's tests
# (tests/slurm.rs) and for developers: Debian's slurmctld + slurmd +
# slurm-client and munge, a slurm.conf for localhost, daemons started by hand
# (no systemd). Idempotent: does nothing when the node is already up.
#
#   .ci/slurm-up.sh          # install (apt-get) if needed, configure, start
#   .ci/slurm-up.sh --stop   # stop the daemons this script started
#
# Needs root (or sudo) to install packages, write /etc/slurm and start the
# daemons. Exports nothing: the tests find Slurm by running `scontrol ping`.
# The node gets the CPUs and memory `slurmd -C` reports, raised to 4 CPUs
# (with SlurmdParameters=config_overrides) on smaller machines so that the
# tests' 4 one-CPU ranks run at once.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
CONF=/etc/slurm/slurm.conf
MIN_CPUS=4

munge_up() {
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1
}

up() {
    munge_up && scontrol ping 2>/dev/null | grep -q "is UP" && sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'
}

stop_slurm() {
    for d in slurmd slurmctld; do
        if [ -f "/run/$d.pid" ]; then $SUDO kill "$(cat /run/$d.pid)" 2>/dev/null || true; fi
    done
}

if [ "${1:-}" = "--stop" ]; then
    stop_slurm
    if [ -f /run/munge/munged.pid ]; then $SUDO kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true; fi
    exit 0
fi

if [ -f "$CONF" ] && up; then
    echo "slurm-up: Slurm is already up ($(sinfo -h -o '%N %c CPUs %T'))"
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm-up: installing slurmctld slurmd slurm-client munge"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge
fi

# munge: a key (the package makes one), its run directory, the daemon as user munge.
if [ ! -s /etc/munge/munge.key ]; then
    $SUDO mungekey --create --keyfile=/etc/munge/munge.key
    $SUDO chown munge:munge /etc/munge/munge.key
    $SUDO chmod 400 /etc/munge/munge.key
fi
$SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
$SUDO chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge_up; then
    $SUDO rm -f /run/munge/munge.socket.2 /run/munge/munged.pid
    $SUDO runuser -u munge -- /usr/sbin/munged
fi

host=$(hostname -s)
cpus=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -1)
mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
overrides=""
if [ "$cpus" -lt "$MIN_CPUS" ]; then
    echo "slurm-up: this machine has $cpus CPUs; declaring $MIN_CPUS (SlurmdParameters=config_overrides) so 4 one-CPU ranks run at once"
    cpus=$MIN_CPUS
    overrides="SlurmdParameters=config_overrides"
fi

$SUDO mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
$SUDO tee "$CONF" >/dev/null <<EOF
# Written by smelt's .ci/slurm-up.sh: one node (this machine), accounting off.
ClusterName=smelt-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=600
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

stop_slurm
sleep 1
$SUDO slurmctld
$SUDO slurmd
for _ in $(seq 1 60); do
    if up; then
        echo "slurm-up: Slurm is up ($(sinfo -h -o '%N %c CPUs %T'))"
        exit 0
    fi
    # A node left DOWN by an earlier start comes back once slurmd registers.
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    sleep 1
done
echo "slurm-up: Slurm did not come up; see /var/log/slurm/slurmctld.log and /var/log/slurm/slurmd.log" >&2
sinfo >&2 || true
exit 1
