#!/usr/bin/env bash
# A one-node SLURM on this machine from Debian's packages, to run the pipeline's SLURM profile on:
#   tests/slurm/single_node_slurm.sh            install (if needed), configure and start SLURM
#   tests/slurm/single_node_slurm.sh DIR [ARGS] ... then run config/test.yaml in DIR (a copy of
#                                               the repository) as the README says; ARGS (targets,
#                                               options) go to snakemake
# Needs root and apt-get (Debian/Ubuntu). No accounting database: jobs' states come from squeue,
# which keeps finished jobs for MinJobAge seconds. Safe to rerun: a running SLURM is left as it is.
set -euo pipefail

die() { echo "single_node_slurm.sh: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "needs root (it installs packages and starts the SLURM daemons)"
command -v apt-get >/dev/null || die "needs apt-get (Debian's slurm-wlm and munge packages)"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge
fi

# munge authenticates every SLURM message; the package made /etc/munge/munge.key.
if ! pgrep -u munge -x munged >/dev/null; then
  mkdir -p /run/munge && chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged
fi
munge -n | unmunge >/dev/null || die "munge does not work (see /var/log/munge/munged.log)"

if ! scontrol ping 2>/dev/null | grep -q "is UP"; then
  node=$(hostname -s)
  # This node as slurmd sees it (CPUs, sockets, RealMemory in MB), so slurmctld accepts it.
  hardware=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //')
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  cat > /etc/slurm/slurm.conf <<EOF
# Written by tests/slurm/single_node_slurm.sh: one node, one partition, no accounting.
ClusterName=ganno
SlurmctldHost=$node
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups in a container: track processes through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# CPUs and memory are both consumable, so a job asking more than the node has is refused.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# Finished jobs stay visible to squeue for an hour: the profile's status check and the test read them.
MinJobAge=3600
ReturnToService=2
SchedulerType=sched/backfill
NodeName=$node $hardware State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  slurmctld
  slurmd
  for _ in $(seq 30); do
    scontrol ping 2>/dev/null | grep -q "is UP" && break
    sleep 1
  done
fi
for _ in $(seq 60); do
  state=$(sinfo -h -N -o %T | head -1)
  [[ $state == idle* || $state == mixed* || $state == allocated* ]] && break
  sleep 1
done
[[ $state == idle* || $state == mixed* || $state == allocated* ]] ||
  die "the node is '$state', not idle (see /var/log/slurm/slurmctld.log and slurmd.log)"
sinfo -N -o "%N %P %T CPUs=%c memory=%m MB"

[[ $# -eq 0 ]] && exit 0
cd "$1"
shift
# The README's command with config/test.yaml; meta-training takes every CPU of this one node.
/usr/bin/time -f "wall-clock %e s" \
  snakemake --workflow-profile workflow/profiles/slurm --configfile config/test.yaml \
  --cores "$(nproc)" "$@"
