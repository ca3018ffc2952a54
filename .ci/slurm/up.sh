#!/usr/bin/env bash
# Brings up a real one-node SLURM cluster (slurmctld + slurmd + slurmdbd/MariaDB for sacct) whose config,
# state, logs and databases all live in DIR. Runs as root, without systemd. Idempotent: when the cluster
# in DIR is already up it says so and exits 0.
#
#   usage: .ci/slurm/up.sh DIR        then: source DIR/env.sh   (exports SLURM_CONF)
#   stop:  .ci/slurm/down.sh DIR
#   exit status: 0 up (or already up), 1 a daemon did not come up (log tails printed, what was started is
#   stopped again), 2 usage / not root, 3 the packages are missing and could not be installed.
#
# Choices that matter (see DESIGN.md section 5):
#   - slurmdbd + MariaDB: without accounting `sacct` fails and submitit never notices a job that died
#     without writing its result (cancelled, OOM, killed), so a waiting sweep hangs forever.
#   - cred_expire=5 and sched_interval=2,bf_interval=1: SLURM holds a requeued job back for about the
#     credential lifetime (default 120 s) and then schedules it within 2 s: requeue-to-restart ~6-8 s.
#   - JobRequeue=1 (also the default): batch jobs may be requeued (`scontrol requeue`, as submitit does).
#   - CR_CPU_Memory with only CPUs= on the node line, and DefMemPerCPU = a fair share of the memory:
#     every CPU is its own slot, so 1-CPU jobs run side by side (2 at once on a 2-core box) even when
#     they do not ask for memory.
#   - munged's socket dir must be world-executable all the way up: DIR/munge, or /tmp/forge-munge-HASH
#     when DIR is not (pytest temp dirs, /root).
#   - Daemons are started with setsid and their PIDs recorded in DIR/<name>.pid.bg for down.sh.
set -euo pipefail

die() { local code=$1; shift; echo "slurm-up: ERROR: $*" >&2; exit "$code"; }
[ $# -eq 1 ] || die 2 "usage: $0 DIR"
[ "$(id -u)" = 0 ] || die 2 "must run as root (slurmd, munged and mariadbd run as root here)"
DIR=$(realpath -m "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
NODE=$(hostname -s)
PARTITION=forge
CONF=$DIR/slurm.conf
DB=$DIR/mysql
DAEMONS="munged mariadbd slurmdbd slurmctld slurmd"   # start order; down.sh stops in reverse

show_logs() {
  local f
  for f in "$DIR"/log/*; do
    [ -s "$f" ] || continue
    echo "----- tail $f" >&2
    tail -n 25 "$f" >&2
  done
}
fail() {   # a daemon did not come up: show why, then stop what this run started
  echo "slurm-up: ERROR: $*" >&2; show_logs
  "$HERE/down.sh" "$DIR" >&2 || true
  echo "slurm-up: ERROR: $* (logs above, full logs in $DIR/log)" >&2
  exit 1
}

alive() { local f=$DIR/$1.pid.bg; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

# ---- 1. packages --------------------------------------------------------------------------------------
need_install=0
for bin in slurmctld slurmd slurmdbd sbatch srun sacct sacctmgr scontrol munged mungekey mariadbd \
           mariadb-install-db; do
  command -v "$bin" >/dev/null 2>&1 || need_install=1
done
if [ "$need_install" = 1 ]; then
  echo "slurm-up: installing slurmctld slurmd slurm-client munge slurmdbd mariadb-server (apt)"
  command -v apt-get >/dev/null || die 3 "SLURM is not installed and apt-get is not available"
  # policy-rc.d 101: keep the packages from starting their own system services (we start ours by hand)
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; added_policy=1
  fi
  log=$(mktemp)
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
           slurmctld slurmd slurm-client munge slurmdbd mariadb-server; } >"$log" 2>&1; then
    [ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    tail -n 30 "$log" >&2; rm -f "$log"
    die 3 "apt-get install of the SLURM packages failed"
  fi
  [ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  rm -f "$log"
fi

# ---- 2. already up? ----------------------------------------------------------------------------------
running=""; stopped=""
for d in $DAEMONS; do if alive "$d"; then running="$running $d"; else stopped="$stopped $d"; fi; done
if [ -n "$running" ] && [ -z "$stopped" ] && SLURM_CONF=$CONF timeout 20 sinfo -h >/dev/null 2>&1; then
  echo "slurm-up: already up in $DIR (source $DIR/env.sh)"
  exit 0
fi
if [ -n "$running" ]; then   # half up (a daemon died): start over cleanly
  echo "slurm-up: partially up in $DIR (running:$running; not running:$stopped), restarting"
  "$HERE/down.sh" "$DIR"
fi

# Another SLURM (e.g. a system service) on the default ports would answer our clients instead.
for port in 6817 6818 6819; do
  if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
    die 1 "port $port is already in use (another slurmctld/slurmd/slurmdbd is running?)"
  fi
done

# ---- 3. configuration --------------------------------------------------------------------------------
mkdir -p "$DIR"/state "$DIR"/spool "$DIR"/log "$DIR"/munge "$DB"
chmod 755 "$DIR" "$DIR/munge"
# munged refuses a socket unless every directory above it is executable by all and the socket dir is not
# group/world-writable; unix socket paths are also limited to ~100 characters. So the sockets (munged's and
# MariaDB's) go to DIR/munge when that works, else (under pytest's 0700 temp dirs, under /root, or a long
# DIR) to a directory of their own in /tmp named after DIR.
all_can_enter() {
  local d=$1 mode
  while [ "$d" != / ]; do
    mode=$(stat -c %a "$d") || return 1
    [ $(( ${mode: -1} & 1 )) = 1 ] || return 1
    d=$(dirname "$d")
  done
}
SOCKDIR=$DIR/munge
if ! all_can_enter "$SOCKDIR" || [ ${#SOCKDIR} -gt 80 ]; then
  SOCKDIR=/tmp/forge-munge-$(printf %s "$DIR" | md5sum | cut -c1-12)
  mkdir -p "$SOCKDIR"; chmod 755 "$SOCKDIR"
fi
SOCK=$SOCKDIR/munge.socket
rm -f "$DIR"/log/*                   # fresh logs, so failure tails are about this start
[ -s "$DIR/munge/munge.key" ] || mungekey --create --keyfile="$DIR/munge/munge.key"
chmod 600 "$DIR/munge/munge.key"

CPUS=$(nproc)
MEM=$(( $(free -m | awk '/^Mem:/{print $2}') - 1024 ))   # leave 1 GiB to the daemons and the OS
[ "$MEM" -ge 512 ] || MEM=512
MEM_PER_CPU=$(( MEM / CPUS ))

cat > "$CONF" <<EOF
# Generated by .ci/slurm/up.sh: a one-node cluster living in $DIR
ClusterName=forgeci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCK,cred_expire=5
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmdParameters=config_overrides
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePass=$SOCK
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$MEM_PER_CPU
SchedulerParameters=sched_interval=2,bf_interval=1
JobRequeue=1
ReturnToService=2
KillWait=5
MinJobAge=300
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

# slurmdbd reads slurmdbd.conf next to SLURM_CONF and refuses it if group/world-readable.
cat > "$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$SOCK
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
EOF
chmod 600 "$DIR/slurmdbd.conf"

cat > "$DIR/env.sh" <<EOF
# source me: client commands (sinfo, sbatch, sacct, ...) and submitit find this cluster through SLURM_CONF
export SLURM_CONF=$CONF
EOF
export SLURM_CONF=$CONF

# ---- 4. daemons --------------------------------------------------------------------------------------
start() {   # start NAME CMD...: detached from our session, output to log/NAME.out, PID to NAME.pid.bg
  local name=$1; shift
  setsid "$@" </dev/null >"$DIR/log/$name.out" 2>&1 &
  echo $! > "$DIR/$name.pid.bg"
}
wait_for() {   # wait_for SECONDS WHAT CMD...: poll CMD (each try at most 5 s) until it succeeds
  local secs=$1 what=$2; shift 2
  local end=$(( SECONDS + secs ))
  while [ "$SECONDS" -lt "$end" ]; do
    timeout 5 "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  fail "$what did not come up within ${secs}s"
}

start munged munged --foreground --key-file="$DIR/munge/munge.key" --socket="$SOCK" \
  --pid-file="$DIR/munge/munged.pid" --seed-file="$DIR/munge/munged.seed" --log-file="$DIR/log/munged.log"
wait_for 10 munged test -S "$SOCK"

# MariaDB as root in DIR (no chown needed), reachable only through its socket.
if [ ! -d "$DB/mysql" ]; then
  mariadb-install-db --user=root --datadir="$DB" --auth-root-authentication-method=socket --skip-test-db \
    >"$DIR/log/mariadb-install.out" 2>&1 || fail "mariadb-install-db failed"
fi
start mariadbd mariadbd --no-defaults --user=root --datadir="$DB" --socket="$SOCKDIR/mysqld.sock" \
  --skip-networking --pid-file="$DB/mariadbd.pid" --innodb-lock-wait-timeout=900 \
  --log-error="$DIR/log/mariadb.err"
wait_for 30 mariadbd test -S "$SOCKDIR/mysqld.sock"

MYSQL_UNIX_PORT=$SOCKDIR/mysqld.sock start slurmdbd slurmdbd -D
wait_for 30 "slurmdbd (sacctmgr)" sacctmgr -n show cluster

start slurmctld slurmctld -D -f "$CONF"
start slurmd slurmd -D -f "$CONF" -N "$NODE"

state=""
for _ in $(seq 120); do
  state=$(timeout 5 sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
  [ "$state" = idle ] && break
  case "$state" in
    down*|drain*|drng*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  for d in $DAEMONS; do alive "$d" || fail "$d exited during start-up"; done
  sleep 0.5
done
[ "$state" = idle ] || fail "node $NODE is '$state', not idle, after 60s"
# Accounting must answer for this cluster too (slurmctld registers it with slurmdbd on start).
wait_for 30 "sacct" sacct -n -X -S now

sinfo
pids=""; for d in $DAEMONS; do pids="$pids $d=$(cat "$DIR/$d.pid.bg")"; done
echo "slurm-up: READY in $DIR: SLURM_CONF=$CONF partition=$PARTITION cpus=$CPUS mem=${MEM}M;$pids"
