#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine, with accounting (sacct), for the cluster tests
# (tests/test_slurm_real.py) and for trying --slurm by hand:
#
#     sudo scripts/slurm/start.sh          # prints the line to source: . /tmp/pe-slurm/env.sh
#     . /tmp/pe-slurm/env.sh               # SLURM_CONF for sbatch, squeue, sacct, scancel
#     sudo scripts/slurm/stop.sh
#
# Needs root and Debian's packages: slurmctld slurmd slurm-client munge slurmdbd mariadb-server
# (no systemd needed; the daemons run in the foreground of their own sessions). Every config,
# state file, socket, log, PID file and the MariaDB data folder lie under one folder,
# SLURM_STATE (default /tmp/pe-slurm); the system's /etc/slurm, /etc/munge and /run are not used.
# Ports: SLURM_PORT_BASE (default 16817) and the next three, for slurmctld, slurmd, slurmdbd and
# MariaDB (127.0.0.1 only). Idempotent: a daemon whose recorded PID is alive is left alone, so
# running it again only starts what is not running. One node, this machine at 127.0.0.1, with the
# CPUs and memory `slurmd -C` reports; partitions `debug` (the default, no time limit) and
# `short` (5 minutes), on the same node.
set -euo pipefail

S=${SLURM_STATE:-/tmp/pe-slurm}
BASE=${SLURM_PORT_BASE:-16817}
CTLD_PORT=$BASE SLURMD_PORT=$((BASE + 1)) DBD_PORT=$((BASE + 2)) DB_PORT=$((BASE + 3))
WAIT_S=${SLURM_START_WAIT_S:-90}

die() { echo "start.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (slurmd starts the jobs, munged runs as the munge user)"
for c in munged mungekey mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sinfo sacct sacctmgr scontrol setpriv; do
  command -v "$c" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "$c" >/dev/null \
    || die "$c not found: apt-get install slurmctld slurmd slurm-client munge slurmdbd mariadb-server"
done
export PATH=$PATH:/usr/sbin:/sbin
case $S in /*) ;; *) S=$PWD/$S ;; esac

mkdir -p "$S"/{etc,run,log,pids,ctld,spool,munge,mysql}
chmod 755 "$S" "$S"/{etc,run,log,pids,ctld,spool}
chown munge:munge "$S/munge" && chmod 755 "$S/munge"  # munged: the socket folder must be searchable by all
chown mysql:mysql "$S/mysql" && chmod 700 "$S/mysql"
export SLURM_CONF=$S/etc/slurm.conf

alive() {  # alive NAME: the PID recorded for NAME runs that daemon's binary
  local f=$S/pids/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$(command -v "$2")")" ]
}

running() {  # running NAME: the process recorded for NAME has not ended (it may still be exec-ing its binary)
  local f=$S/pids/$1.pid
  [ -s "$f" ] && [ -e "/proc/$(cat "$f")" ] && ! grep -q '^State:.*Z' "/proc/$(cat "$f")/status" 2>/dev/null
}

launch() {  # launch NAME BINARY COMMAND...: start it in a session of its own, record its PID
  local name=$1 bin=$2; shift 2
  if alive "$name" "$bin"; then echo "$name: running (pid $(cat "$S/pids/$name.pid"))"; return; fi
  setsid "$@" >>"$S/log/$name.out" 2>&1 </dev/null &
  echo $! >"$S/pids/$name.pid"
  echo "$name: started (pid $!)"
}

wait_for() {  # wait_for WHAT NAME COMMAND...: until COMMAND succeeds; fail if the daemon NAME died
  local what=$1 name=$2 t=0; shift 2
  until timeout 10 "$@" >/dev/null 2>&1; do
    running "$name" || die "$name exited; see $S/log/$name.out and $S/log/$name.log"
    t=$((t + 1)); [ $t -le $((WAIT_S * 5)) ] || die "timed out waiting for $what; see $S/log/"
    sleep 0.2
  done
}

HOST=$(hostname -s)
# --- munge: a key of this cluster's own, the socket in the state folder
if [ ! -s "$S/munge/munge.key" ]; then
  setpriv --reuid=munge --regid=munge --init-groups mungekey --create --keyfile="$S/munge/munge.key"
fi
launch munged munged setpriv --reuid=munge --regid=munge --init-groups munged --foreground \
  --socket="$S/munge/munge.socket.2" --key-file="$S/munge/munge.key" --pid-file="$S/munge/munged.pid" \
  --log-file="$S/munge/munged.log" --seed-file="$S/munge/munged.seed"
wait_for "munge" munged sh -c "munge -n --socket='$S/munge/munge.socket.2' | unmunge --socket='$S/munge/munge.socket.2'"

# --- MariaDB for slurmdbd: a private data folder, TCP on 127.0.0.1 only
if [ ! -d "$S/mysql/data/mysql" ]; then
  mariadb-install-db --no-defaults --datadir="$S/mysql/data" --user=mysql --auth-root-authentication-method=socket \
    --skip-test-db >"$S/log/mariadb-install.out" 2>&1 || die "mariadb-install-db failed; see $S/log/mariadb-install.out"
fi
launch mariadbd mariadbd mariadbd --no-defaults --datadir="$S/mysql/data" --socket="$S/mysql/mysqld.sock" \
  --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$S/mysql/mariadbd.pid" \
  --log-error="$S/mysql/mariadbd.log" --user=mysql --innodb-buffer-pool-size=32M
SQL=(mariadb --no-defaults --socket="$S/mysql/mysqld.sock" -u root)
wait_for "MariaDB" mariadbd "${SQL[@]}" -e "SELECT 1"
if [ ! -s "$S/etc/db.pass" ]; then (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$S/etc/db.pass"); fi
PASS=$(cat "$S/etc/db.pass")
"${SQL[@]}" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"

# --- configs (written every time from the same inputs: the same text)
read -r -a NODE <<<"$(slurmd -C | head -1)"
NODE_LINE="NodeName=$HOST NodeAddr=127.0.0.1 ${NODE[*]:1} State=UNKNOWN"
cat >"$S/etc/slurm.conf" <<EOF
# written by scripts/slurm/start.sh: a one-node cluster for the cluster tests
ClusterName=pe
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: a requeued job waits this long before it starts again (Slurm's default: 120 s)
AuthInfo=socket=$S/munge/munge.socket.2,cred_expire=10
CredType=cred/munge
StateSaveLocation=$S/ctld
SlurmdSpoolDir=$S/spool/%n
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# a submitted job starts at once; a pending one (a requeued job) is looked at every 5 s (default: 30, 60)
SchedulerParameters=batch_sched_delay=0,bf_interval=5,sched_interval=5
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$S/munge/munge.socket.2
JobCompType=jobcomp/none
MailProg=/bin/true
# a cancelled or preempted job gets SIGTERM, then SIGKILL this many seconds later (Slurm's default: 30)
KillWait=5
$NODE_LINE
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=ALL MaxTime=5 State=UP
EOF
(umask 077; cat >"$S/etc/slurmdbd.conf" <<EOF
# written by scripts/slurm/start.sh
AuthType=auth/munge
AuthInfo=socket=$S/munge/munge.socket.2
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$S/run/slurmdbd.pid
LogFile=$S/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$PASS
StorageLoc=slurm_acct_db
EOF
)
chmod 600 "$S/etc/slurmdbd.conf"
echo "export SLURM_CONF=$S/etc/slurm.conf" >"$S/env.sh"

# --- slurmdbd, slurmctld, slurmd
launch slurmdbd slurmdbd slurmdbd -D
wait_for "slurmdbd" slurmdbd sacctmgr -n list cluster
timeout 10 sacctmgr -n -P list cluster format=cluster | grep -qx pe || timeout 10 sacctmgr -i add cluster pe >/dev/null
launch slurmctld slurmctld slurmctld -D -f "$SLURM_CONF"
wait_for "slurmctld" slurmctld scontrol ping
launch slurmd slurmd slurmd -D -f "$SLURM_CONF"
t=0
until timeout 10 sinfo -h -n "$HOST" -o %T | grep -Eq '^(idle|mixed|allocated)$'; do
  running slurmd || die "slurmd exited; see $S/log/slurmd.out and $S/log/slurmd.log"
  if sinfo -h -n "$HOST" -o %T | grep -Eq '^(down|drain)'; then  # left down by an earlier run
    scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
  fi
  t=$((t + 1)); [ $t -le $((WAIT_S * 5)) ] || die "timed out waiting for node $HOST: $(sinfo -h -N -o '%N %T %E')"
  sleep 0.2
done
for d in munged mariadbd slurmdbd slurmctld slurmd; do  # not another cluster's daemons answering on these ports
  alive $d $d || die "$d (pid $(cat "$S/pids/$d.pid")) is not running; see $S/log/$d.out (another daemon on its port?)"
done
echo "Slurm is up: node $HOST ($(sinfo -h -p debug -o '%c CPUs, %m MB'), partitions debug and short); state in $S"
echo "for sbatch, squeue, sacct: . $S/env.sh"
