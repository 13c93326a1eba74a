#!/usr/bin/env bash
# A private single-node Slurm cluster on this machine, for tests/test_slurm.py (and by hand):
#
#   tests/slurm/cluster.sh start DIR   # install slurm-wlm + munge if missing, start munged, slurmctld, slurmd
#   tests/slurm/cluster.sh stop DIR    # stop the daemons started in DIR
#
# Everything (config, munge key and socket, state, logs) lives in DIR and the ports are free ones; the
# one thing outside DIR is /etc/slurm/slurm.conf, a link to DIR/slurm.conf while the cluster runs: the
# Slurm executor's job step drops SLURM_CONF from the environment of its `srun`, so the configuration
# must be where Slurm looks by default. A machine with a Slurm configuration of its own is refused.
# Needs root (slurmd runs jobs as their owner); the partition is named `test`.
set -euo pipefail

action=${1:?usage: cluster.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: cluster.sh start|stop DIR}")
here=$(dirname "$(realpath "$0")")
conf=/etc/slurm/slurm.conf
unset SLURM_CONF  # the daemons and sinfo read $conf

stop() {
    for name in slurmd slurmctld munged; do
        if [[ -f $dir/$name.pid ]]; then
            pid=$(cat "$dir/$name.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            rm -f "$dir/$name.pid"
        fi
    done
    if [[ $(readlink "$conf") == "$dir/slurm.conf" ]]; then rm -f "$conf"; fi
}

if [[ $action == stop ]]; then
    stop
    exit 0
fi
[[ $action == start ]] || { echo "usage: cluster.sh start|stop DIR" >&2; exit 2; }

if [[ $(id -u) != 0 ]]; then
    echo "cluster.sh: must run as root (slurmd starts jobs as their owner)" >&2
    exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; }
fi

mkdir -p "$dir"/{munge,state,spool}
chmod 700 "$dir/munge"
stop  # a cluster left over in DIR
if [[ -L $conf ]]; then
    echo "cluster.sh: a test cluster is running (stop it: tests/slurm/cluster.sh stop $(dirname "$(readlink "$conf")"))" >&2
    exit 1
elif [[ -e $conf ]]; then
    echo "cluster.sh: $conf exists: this machine has a Slurm cluster of its own; not starting a test cluster" >&2
    exit 1
fi

# munged: its own key and socket, so a munged already running on this host does not matter. --force:
# munged wants a socket every user can reach (no 0700 directory on the way); only root uses this one.
key=$dir/munge/munge.key
[[ -f $key ]] || dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
chmod 400 "$key"
munged --force --key-file="$key" --socket="$dir/munge/munge.socket" --pid-file="$dir/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
host=$(hostname -s)
# This machine's CPUs and memory as slurmd sees them; the node is reached on the loopback address.
node="$(slurmd -C | head -n 1) NodeAddr=127.0.0.1"
sed -e "s|@DIR@|$dir|g" -e "s|@HOST@|$host(127.0.0.1)|g" -e "s|@NODE@|$node|g" -e "s|@PARTITION@|test|g" \
    -e "s|@CTLD_PORT@|$(free_port)|g" -e "s|@SLURMD_PORT@|$(free_port)|g" \
    "$here/slurm.conf.in" >"$dir/slurm.conf"
mkdir -p "$(dirname "$conf")"
ln -s "$dir/slurm.conf" "$conf"

slurmctld -i
slurmd
for _ in $(seq 120); do
    state=$(sinfo --noheader --nodes="$host" --format=%T 2>/dev/null || true)
    [[ $state == idle ]] && exit 0
    sleep 0.5
done
echo "cluster.sh: node $host not idle after 60 s (state: ${state:-none}); logs in $dir" >&2
tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
exit 1
