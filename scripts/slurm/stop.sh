#!/usr/bin/env bash
# Stop the one-node cluster that scripts/slurm/start.sh started (same SLURM_STATE): cancel the jobs
# still on it, then end its daemons by the PIDs start.sh recorded (a PID whose process no longer
# runs that daemon's binary is skipped). The state folder stays (its logs); delete it for a cold start.
set -uo pipefail

S=${SLURM_STATE:-/tmp/pe-slurm}
case $S in /*) ;; *) S=$PWD/$S ;; esac
export PATH=$PATH:/usr/sbin:/sbin SLURM_CONF=$S/etc/slurm.conf
[ -d "$S/pids" ] || { echo "stop.sh: nothing started under $S"; exit 0; }

pid_of() {  # pid_of NAME BINARY: the recorded PID if it still runs BINARY
  local f=$S/pids/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$(command -v "$2")")" ] && echo "$pid"
}

if pid_of slurmctld slurmctld >/dev/null && scontrol ping >/dev/null 2>&1; then
  jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    echo "cancelling the jobs still on the cluster: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 60); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.5; done
  fi
fi

status=0
for d in slurmd:slurmd slurmctld:slurmctld slurmdbd:slurmdbd mariadbd:mariadbd munged:munged; do
  name=${d%%:*} bin=${d#*:}
  if ! pid=$(pid_of "$name" "$bin"); then rm -f "$S/pids/$name.pid"; continue; fi
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 150); do [ -e "/proc/$pid" ] || break; sleep 0.2; done
  if [ -e "/proc/$pid" ]; then
    echo "$name (pid $pid) did not end in 30 s: killed"; kill -KILL "$pid" 2>/dev/null || status=1
  else
    echo "$name: stopped (pid $pid)"
  fi
  rm -f "$S/pids/$name.pid"
done
exit $status
