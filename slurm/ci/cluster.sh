#!/usr/bin/env bash
# A real one-node SLURM cluster (with accounting) for tests and CI, on 127.0.0.1 only.
#
#   slurm/ci/cluster.sh start  STATE_DIR   # start (or reuse) the cluster; writes STATE_DIR/env.sh
#   slurm/ci/cluster.sh stop   STATE_DIR   # scancel every job, stop every daemon (always exits 0)
#   slurm/ci/cluster.sh status STATE_DIR   # print daemons and sinfo; exit 0 when the node answers
#
# Everything (munge key, sockets, pid/log files, MariaDB datadir, slurm state) lives under
# STATE_DIR. Ports: 6817 slurmctld, 6818 slurmd, 6819 slurmdbd, 3307 MariaDB, so one
# cluster per machine at a time. Needs root and the packages of slurm/ci/install.sh.
# Unix sockets live under STATE_DIR: keep its path short (< ~60 characters).
# Facts behind the choices: ../shared/notes/slurm-on-one-machine.md.
set -euo pipefail

CTLD_PORT=6817
SLURMD_PORT=6818
DBD_PORT=6819
DB_PORT=3307
# MaxArraySize: largest array index + 1. 1001 allows arrays of up to 1001 tasks (0..1000),
# enough for the toolkit's shards; raise it here if a test needs more.
MAX_ARRAY_SIZE=1001
MEM_MARGIN_MB=512        # memory left to the OS when computing RealMemory
START_TIMEOUT=${ALM_SLURM_START_TIMEOUT:-60}   # seconds, per readiness wait
STOP_TIMEOUT=${ALM_SLURM_STOP_TIMEOUT:-20}     # seconds, per daemon before KILL

usage() {
    echo "usage: $0 {start|stop|status} STATE_DIR" >&2
    exit 2
}

[[ $# -eq 2 ]] || usage
CMD=$1
STATE=$2
[[ -n "$STATE" ]] || usage
if [[ ! -d "$STATE" ]]; then
    case "$CMD" in
        start) mkdir -p "$STATE" ;;
        stop) echo "[cluster.sh] $STATE does not exist: nothing to stop" >&2; exit 0 ;;
        status) echo "[cluster.sh] $STATE does not exist: no cluster" >&2; exit 1 ;;
        *) usage ;;
    esac
fi
STATE=$(cd "$STATE" && pwd -P)

ETC=$STATE/etc
RUN=$STATE/run
LOG=$STATE/log
MUNGE_DIR=$STATE/munge          # key + seed, mode 700
MUNGE_SOCK_DIR=$STATE/munge-sock  # socket folder, executable by everyone
MUNGE_SOCK=$MUNGE_SOCK_DIR/munge.socket
DB_DIR=$STATE/mariadb
DB_SOCK=$RUN/mariadb.sock
SLURM_CONF_FILE=$ETC/slurm.conf
DBD_CONF=$ETC/slurmdbd.conf
ENV_SH=$STATE/env.sh

# daemon name == its /proc/PID/comm, in stop order (reverse of start order)
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)
pidfile() { echo "$RUN/$1.pid"; }

log() { echo "[cluster.sh] $*" >&2; }

# true while PID is a live process (a zombie counts as gone: pid 1 may reap it late)
proc_live() {
    local st
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# pid of a daemon from its pid file, only if that process is alive and really that daemon
daemon_pid() {
    local f pid comm
    f=$(pidfile "$1")
    [[ -s "$f" ]] || return 1
    pid=$(tr -dc '0-9' <"$f")
    [[ -n "$pid" && -r /proc/$pid/comm ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ "$comm" == "$1" ]] || return 1
    proc_live "$pid" || return 1
    echo "$pid"
}

port_open() {  # something listens on 127.0.0.1:$1
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

log_tails() {
    local f
    for f in "$LOG"/*.log; do
        [[ -f "$f" ]] || continue
        echo "----- tail of $f -----" >&2
        tail -n 25 "$f" >&2 || true
    done
}

# wait_for DAEMON DESCRIPTION TIMEOUT COMMAND...: poll COMMAND every 0.1 s until it
# succeeds; fail at the timeout, or early once DAEMON has been gone for 3 s (it died)
wait_for() {
    local daemon=$1 what=$2 limit=$3
    shift 3
    local start=$SECONDS deadline=$((SECONDS + limit)) seen_dead=-1
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            fail "timed out after ${limit}s waiting for $what"
        fi
        if pid_alive "$daemon"; then
            seen_dead=-1
        elif ((seen_dead < 0)); then
            seen_dead=$SECONDS
        elif ((SECONDS - seen_dead >= 3 && SECONDS - start >= 3)); then
            fail "$daemon exited while waiting for $what (see $LOG/$daemon.log)"
        fi
        sleep 0.1
    done
}

die() {  # a clear error without diagnostics (nothing was started)
    log "ERROR: $*"
    exit 1
}

STARTED_HERE=0
fail() {  # an error with the daemons' state and log tails; stops what this start launched
    log "ERROR: $*"
    if [[ -f "$SLURM_CONF_FILE" ]] && pid_alive slurmctld; then
        log "sinfo: $(slurm_env timeout 5 sinfo -N 2>&1 | tr '\n' ' ' || true)"
    fi
    log_tails
    if ((STARTED_HERE)); then
        log "stopping what this start launched"
        do_stop || true
    fi
    exit 1
}

slurm_env() { SLURM_CONF=$SLURM_CONF_FILE "$@"; }

node_state() {
    slurm_env timeout 5 sinfo -h -N -n "$HOST" -o '%t' 2>/dev/null | head -n1
}
node_idle() { [[ "$(node_state)" == idle ]]; }
ctld_answers() { slurm_env timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; }
munge_works() { munge -n -S "$MUNGE_SOCK" 2>/dev/null | unmunge -S "$MUNGE_SOCK" >/dev/null 2>&1; }
db_works() { mariadb-admin --no-defaults -S "$DB_SOCK" -u root ping 2>/dev/null | grep -q alive; }
dbd_ready() { port_open "$DBD_PORT"; }
pid_alive() { daemon_pid "$1" >/dev/null; }

HOST=$(hostname -s)

# ---------------------------------------------------------------------------- start
write_slurm_conf() {
    local cpus mem_total real_mem def_mem
    cpus=$(nproc)
    mem_total=$(free -m | awk '/^Mem:/ {print $2}')
    real_mem=$((mem_total - MEM_MARGIN_MB))
    ((real_mem >= 256)) || real_mem=$((mem_total * 3 / 4))
    def_mem=$((real_mem / cpus))
    cat >"$SLURM_CONF_FILE" <<EOF
# Generated by slurm/ci/cluster.sh: a one-node test cluster on 127.0.0.1.
ClusterName=ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this long (default 120 s) before it may start again;
# short here so requeue tests finish in seconds
AuthInfo=socket=$MUNGE_SOCK,cred_expire=10
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SlurmctldParameters=preempt_send_user_signal
# Arrays of up to $MAX_ARRAY_SIZE tasks (indices 0..$((MAX_ARRAY_SIZE - 1))).
MaxArraySize=$MAX_ARRAY_SIZE
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCK
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

write_dbd_conf() {
    (umask 077 && cat >"$DBD_CONF" <<EOF
# Generated by slurm/ci/cluster.sh (mode 600: slurmdbd refuses a readable one).
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdAddr=127.0.0.1
DbdHost=$HOST
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$(pidfile slurmdbd)
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm-ci
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$DBD_CONF"
}

write_env() {
    cat >"$ENV_SH" <<EOF
# Source this file to use the test cluster of $STATE
export SLURM_CONF=$SLURM_CONF_FILE
EOF
    cat "$ENV_SH"
}

do_start() {
    local d running=()
    for d in "${DAEMONS[@]}"; do
        pid_alive "$d" && running+=("$d")
    done
    if ((${#running[@]})); then
        if ((${#running[@]} == ${#DAEMONS[@]})) && node_idle_or_busy; then
            log "cluster of $STATE is already running: reusing it"
            write_env
            return 0
        fi
        fail "some daemons of $STATE are running (${running[*]}) but the cluster is not healthy; run: $0 stop $STATE"
    fi
    local p
    for p in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT"; do
        port_open "$p" && die "port 127.0.0.1:$p is already in use (another cluster? stop it first)"
    done
    for c in munged munge mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sinfo scontrol; do
        command -v "$c" >/dev/null || die "$c not found: run slurm/ci/install.sh"
    done

    STARTED_HERE=1
    local t0=$SECONDS
    rm -f "$LOG"/*.log  # fresh logs, so a failure shows this start's messages only
    mkdir -p "$ETC" "$RUN" "$LOG" "$STATE/spool/ctld" "$STATE/spool/d" "$MUNGE_DIR" "$MUNGE_SOCK_DIR"
    rm -f "$RUN"/*.pid
    chmod 755 "$STATE" "$RUN" "$MUNGE_SOCK_DIR"

    # 1. munge, with a key of our own
    chmod 700 "$MUNGE_DIR"
    if [[ ! -s "$MUNGE_DIR/munge.key" ]]; then
        (umask 077 && dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none)
    fi
    chmod 400 "$MUNGE_DIR/munge.key"
    rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
    munged --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCK" \
        --pid-file="$(pidfile munged)" --log-file="$LOG/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" --force </dev/null >>"$LOG/munged.log" 2>&1 ||
        fail "munged did not start"
    wait_for munged "munged" "$START_TIMEOUT" munge_works
    log "munged up ($((SECONDS - t0))s)"

    # 2. accounting: MariaDB, the slurm user, slurmdbd
    if [[ ! -d "$DB_DIR/mysql" ]]; then
        mkdir -p "$DB_DIR"
        mariadb-install-db --no-defaults --user=root --datadir="$DB_DIR" \
            --auth-root-authentication-method=socket --innodb-log-file-size=16M >"$LOG/mariadb-install-db.log" 2>&1 ||
            { cat "$LOG/mariadb-install-db.log" >&2; rm -rf "$DB_DIR"; fail "mariadb-install-db failed"; }
    fi
    setsid mariadbd --no-defaults --user=root --datadir="$DB_DIR" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --socket="$DB_SOCK" \
        --pid-file="$(pidfile mariadbd)" --log-error="$LOG/mariadbd.log" \
        --innodb-buffer-pool-size=64M --innodb-log-file-size=16M --skip-name-resolve \
        </dev/null >>"$LOG/mariadbd.log" 2>&1 &
    wait_for mariadbd "mariadbd on 127.0.0.1:$DB_PORT" "$START_TIMEOUT" db_works
    mariadb --no-defaults -S "$DB_SOCK" -u root <<'EOF' || fail "could not create the slurm database user"
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm-ci';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm-ci';
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
    log "mariadbd up ($((SECONDS - t0))s)"

    write_dbd_conf
    write_slurm_conf
    SLURM_CONF=$SLURM_CONF_FILE slurmdbd </dev/null >>"$LOG/slurmdbd.log" 2>&1 || fail "slurmdbd did not start"
    wait_for slurmdbd "slurmdbd on 127.0.0.1:$DBD_PORT" "$START_TIMEOUT" dbd_ready
    log "slurmdbd up ($((SECONDS - t0))s)"

    # 3. slurmctld, slurmd, then the node must be idle
    slurmctld -f "$SLURM_CONF_FILE" </dev/null >>"$LOG/slurmctld.log" 2>&1 || fail "slurmctld did not start"
    wait_for slurmctld "slurmctld on 127.0.0.1:$CTLD_PORT" "$START_TIMEOUT" ctld_answers
    slurmd -f "$SLURM_CONF_FILE" -N "$HOST" </dev/null >>"$LOG/slurmd.log" 2>&1 || fail "slurmd did not start"
    wait_for slurmd "node $HOST to be idle in sinfo" "$START_TIMEOUT" node_idle
    for d in "${DAEMONS[@]}"; do
        pid_alive "$d" || fail "$d is not running after start"
    done
    log "cluster up in $((SECONDS - t0))s: node $HOST idle"
    STARTED_HERE=0
    write_env
}

node_idle_or_busy() {
    local s
    s=$(node_state) || return 1
    [[ "$s" == idle || "$s" == mix || "$s" == alloc ]]
}

# ---------------------------------------------------------------------------- stop
stop_daemon() {  # TERM by pid file (after checking /proc/PID/comm), wait, then KILL
    local name=$1 pid deadline
    pid=$(daemon_pid "$name") || { rm -f "$(pidfile "$name")"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while proc_live "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]]; do
        if ((SECONDS >= deadline)); then
            log "$name ($pid) ignored TERM for ${STOP_TIMEOUT}s: KILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
            break
        fi
        sleep 0.1
    done
    rm -f "$(pidfile "$name")"
    log "stopped $name ($pid)"
}

do_stop() {
    if pid_alive slurmctld && [[ -f "$SLURM_CONF_FILE" ]]; then
        local user deadline
        user=$(id -un)
        slurm_env timeout 10 scancel -u "$user" 2>/dev/null || true
        deadline=$((SECONDS + 15))
        while ((SECONDS < deadline)) && [[ -n "$(slurm_env timeout 5 squeue -h -t PD,R,CG,S -o %i 2>/dev/null || true)" ]]; do
            sleep 0.2
        done
    fi
    local d
    for d in "${DAEMONS[@]}"; do
        stop_daemon "$d" || true
    done
    rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock" "$DB_SOCK" 2>/dev/null || true
    return 0
}

# ---------------------------------------------------------------------------- status
do_status() {
    local d pid ok=0
    for d in "${DAEMONS[@]}"; do
        if pid=$(daemon_pid "$d"); then
            echo "$d: running (pid $pid)"
        else
            echo "$d: not running"
            ok=1
        fi
    done
    if [[ -f "$SLURM_CONF_FILE" ]] && slurm_env timeout 5 sinfo -N 2>/dev/null; then
        :
    else
        echo "sinfo: no answer"
        ok=1
    fi
    return $ok
}

case "$CMD" in
    start) do_start ;;
    stop)
        do_stop
        exit 0
        ;;
    status) do_status ;;
    *) usage ;;
esac
