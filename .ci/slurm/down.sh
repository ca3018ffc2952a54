#!/usr/bin/env bash
# Stops the cluster that .ci/slurm/up.sh started in DIR, using the PIDs it recorded (DIR/<name>.pid.bg).
# Safe to run when nothing runs (or DIR does not exist). Leaves DIR (config, logs, state) in place.
#
#   usage: .ci/slurm/down.sh DIR
#
# Order matters: jobs are cancelled first (slurmstepd is not a child of slurmd and would outlive it),
# then slurmd, slurmctld, slurmdbd, mariadbd, and munged last (the others need it to shut down cleanly).
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$(realpath -m "$1")
export SLURM_CONF=$DIR/slurm.conf

alive() { local f=$DIR/$1.pid.bg; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

if ! ls "$DIR"/*.pid.bg >/dev/null 2>&1; then
  echo "slurm-down: nothing to stop in $DIR"
  exit 0
fi

# 1. jobs
if alive slurmctld && [ -f "$SLURM_CONF" ]; then
  scancel --full --user="$(id -un)" >/dev/null 2>&1 || true
  for _ in $(seq 60); do
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
    sleep 0.5
  done
  left=$(squeue -h -o '%i %T' 2>/dev/null)
  [ -n "$left" ] && echo "slurm-down: jobs still listed after 30s: $left"
fi
# A slurmstepd of this cluster (it inherits SLURM_CONF from our slurmd) must not outlive it.
for p in $(pgrep -x slurmstepd 2>/dev/null); do
  if tr '\0' '\n' 2>/dev/null < "/proc/$p/environ" | grep -qx "SLURM_CONF=$SLURM_CONF"; then
    kill -9 "$p" 2>/dev/null && echo "slurm-down: killed leftover slurmstepd ($p)"
  fi
done

# 2. daemons, munged last
for name in slurmd slurmctld slurmdbd mariadbd munged; do
  f=$DIR/$name.pid.bg
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "slurm-down: $name ($pid) ignored SIGTERM for 15s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null
    fi
    echo "slurm-down: stopped $name ($pid)"
  fi
  rm -f "$f"
done
# up.sh's socket directory in /tmp, used when DIR itself could not hold the sockets
rm -rf "/tmp/forge-munge-$(printf %s "$DIR" | md5sum | cut -c1-12)"
exit 0
