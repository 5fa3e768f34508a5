#!/usr/bin/env bash
# bench/profile.sh - where httpsrv's time goes under load.
#
#   bench/profile.sh [WORKLOAD]     WORKLOAD: hello (default), pipeline, chunks, gzip10k,
#                                   gzipstream, big
#
# 1. callgrind: httpsrvd (threads=1, pinned to CPU 0) under valgrind --tool=callgrind; after
#    a warm-up the counters are zeroed, wrk (CPU 1) runs PROFILE_SECONDS, the counters are
#    dumped. Prints user-space instructions per request (deterministic, unlike wall time:
#    the number to watch while optimizing), the top functions by inclusive cost and by self
#    cost. The same is done for nginx + lua (one process, master_process off) unless
#    PEERS=0, so the instruction counts compare like with like. Kernel time is not in it.
# 2. perf (when `perf record -e cpu-clock` works here; PMU counters are not needed): the
#    server at full speed under `perf record --call-graph dwarf`, wrk PROFILE_SECONDS: the
#    split between the kernel, httpsrv, libc and the module, and the top symbols (self, and
#    with children, so a syscall's whole kernel path counts for the code that made it).
#
# 3. System calls per request (STRACE [1]) for httpsrv and, unless PEERS=0, nginx (its worker)
#    and the floor, under the same load: the kernel's share of the time is in these calls.
#    Counted at full speed with `perf stat` on the syscall tracepoints when perf may read them,
#    with the server's and wrk's context switches (a client that sleeps between responses
#    costs the server its wake-ups); else with `strace -c`, which slows the servers (the counts
#    of sends and receives per request hold, epoll_wait's do not).
#
# Before/after: BEFORE=<git revision> bench/profile.sh [WORKLOAD] builds that revision's
# httpsrvd as bench/run.sh does (lib.sh's build_before: a temporary git worktree, cargo build
# --release with CARGO_TARGET_DIR=BEFORE_TARGET_DIR [/work/target-before], the current
# bench_module.so) and runs step 1 on it too, right after the current build and in the same
# way, then prints the user-space instructions per request of httpsrv and before side by
# side with their ratio. PEERS defaults to 0 then (no nginx, no floor); steps 2 and 3
# profile the current build only.
#
# Environment: PROFILE_SECONDS [10]  CONNS [16]  PEERS [1; 0 with BEFORE]  CALLGRIND [1]
#   PERF [auto|0]  STRACE [1]  NO_BUILD=1  BEFORE=<git revision>  BEFORE_TARGET_DIR
#   PROFILE_OUT [/tmp/httpsrv-profile]: the raw callgrind.out.* and perf.data files stay
#   there for callgrind_annotate / kcachegrind / perf report.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

WORKLOAD=${1:-hello}
case $WORKLOAD in
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
hello | pipeline | chunks | gzip10k | gzipstream | big) ;;
*) die "unknown workload $WORKLOAD (try --help)" ;;
esac
PROFILE_SECONDS=${PROFILE_SECONDS:-10}
CONNS=${CONNS:-16}
BEFORE=${BEFORE:-}
if [[ -n $BEFORE ]]; then
    PEERS=${PEERS:-0}
else
    PEERS=${PEERS:-1}
fi
PERF=${PERF:-auto}
PROFILE_OUT=${PROFILE_OUT:-/tmp/httpsrv-profile}
THREADS=1 SERVER_CPUS=0 WRK_CPUS=1

WORK=$(mktemp -d /tmp/httpsrv-profile-work.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$PROFILE_OUT"

install_deps
build_all
if [[ -n $BEFORE ]]; then
    build_before "$BEFORE"
fi

url_args() {
    local port=$1 url="http://127.0.0.1:$1"
    case $WORKLOAD in
    hello) URL_ARGS=("$url/hello") ;;
    pipeline) URL_ARGS=(-s "$BENCH/pipeline.lua" "$url" -- /hello 16) ;;
    gzip10k | gzipstream) URL_ARGS=(-H 'Accept-Encoding: gzip' "$url/$WORKLOAD") ;;
    *) URL_ARGS=("$url/$WORKLOAD") ;;
    esac
}

# Runs wrk for SECONDS against PORT; prints the number of requests completed.
load() {
    local port=$1 seconds=$2 out="$WORK/wrk.$RANDOM.txt"
    url_args "$port"
    timeout $((seconds + 60)) taskset -c "$WRK_CPUS" wrk -t1 -c"$CONNS" -d"${seconds}s" \
        --timeout 30s "${URL_ARGS[@]}" >"$out" 2>&1 || die "wrk failed: $(cat "$out")"
    awk '/ requests in / {print $1}' "$out"
}

# The function lines of callgrind_annotate (inclusive: $1 yes|no) for FILE, at most N,
# with the toolchain's and the registry's path prefixes shortened.
annotate() {
    callgrind_annotate --inclusive="$1" --threshold=100 "$2" >"$WORK/annotate.txt" 2>/dev/null || true
    # self mode: the thread-start frames that were on the stack when the counters were
    # zeroed show about 100%; they are no one's own cost, so they are left out
    awk '/^-+$/ {sep++; next} sep >= 3 && NF > 0 && !/^ *Ir/' "$WORK/annotate.txt" |
        sed -E 's#/rustc/[0-9a-f]+/library/#rust:#; s#/root/\.cargo/registry/src/[^/]+/##; s#'"$ROOT"'/##; s#'"$WORK"'/before-src/##; s# *\[[^]]*\] *$##' |
        awk -v self="$([[ $1 == no ]] && echo 1 || echo 0)" -v n="$3" '
            self && /:(clone|start_thread|main|\(below main\)|__libc_start_main[^ ]*|std::sys::backtrace::__rust_begin_short_backtrace|<std::sys::thread::unix::Thread>::new::thread_start|core::ops::function::FnOnce::call_once\{\{vtable.shim\}\}) *$/ {next}
            self && /\((100\.0|99\.9[0-9])%\) +\?\?\?:0x[0-9a-f]+ *$/ {next}
            ++k <= n'
}

# callgrind on one server process: $1 name, $2 PID, $3 port. Writes
# $PROFILE_OUT/callgrind.out.<name>.<workload>, prints the summary and appends
# "name requests instructions" to $WORK/callgrind.totals.
callgrind_profile() {
    local name=$1 pid=$2 port=$3 i
    local file="$PROFILE_OUT/callgrind.out.$name.$WORKLOAD"
    for ((i = 0; i < 100; i++)); do
        callgrind_control -s "$pid" >/dev/null 2>&1 && break
        sleep 0.2
    done
    load "$port" 2 >/dev/null # warm-up: lazily built state, caches
    callgrind_control -z "$pid" >/dev/null
    local reqs
    reqs=$(load "$port" "$PROFILE_SECONDS")
    callgrind_control -d "$pid" >/dev/null
    local dump
    for ((i = 0; i < 50; i++)); do
        # the newest dump; the names are ours (no spaces), so ls -t is safe here
        # shellcheck disable=SC2012
        dump=$(ls -t "$WORK/callgrind.out.$name".*.[0-9]* 2>/dev/null | head -1 || true)
        [[ -n $dump ]] && break
        sleep 0.2
    done
    [[ -n $dump ]] || die "no callgrind dump for $name"
    sleep 0.5
    cp "$dump" "$file"
    local total
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$file")
    echo
    echo "#### $name: $reqs requests in ${PROFILE_SECONDS}s under callgrind; $total instructions (user space)"
    echo
    awk -v t="$total" -v r="$reqs" 'BEGIN {printf "**%.0f instructions per request** (user space, %s)\n", t / r, "'"$name"'"}'
    echo "$name $reqs $total" >>"$WORK/callgrind.totals"
    echo
    echo "Top by inclusive cost (the function and everything it calls; a function inlined into"
    echo "several files shows once per file):"
    echo
    echo '```'
    annotate yes "$file" "${TOP:-40}"
    echo '```'
    echo
    echo "Top by self cost:"
    echo
    echo '```'
    annotate no "$file" "${TOP:-25}"
    echo '```'
}

echo "## Profile: $WORKLOAD, $CONNS connections, ${PROFILE_SECONDS}s per tool ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
machine_facts
if [[ ${CALLGRIND:-1} == 1 ]]; then
    echo
    echo "### callgrind (instructions executed in user space; kernel time is not counted)"

    # the valgrind words for server $1
    vg() {
        VG=(valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.$1.%p"
            --dump-instr=no --collect-jumps=no --separate-threads=no)
    }
    vg httpsrv
    start_httpsrv callgrind "${VG[@]}"
    callgrind_profile httpsrv "$SRV_PID" "$SRV_PORT"
    stop_pid "$SRV_PID"

    if [[ -n $BEFORE ]]; then
        vg before
        start_before callgrind "${VG[@]}"
        callgrind_profile before "$SRV_PID" "$SRV_PORT"
        stop_pid "$SRV_PID"
        echo
        echo "#### httpsrv against before (BEFORE=$BEFORE): user-space instructions per request"
        echo
        echo "| build | revision | requests | instructions | instructions per request |"
        echo "| --- | --- | ---: | ---: | ---: |"
        now_rev="$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' + uncommitted changes')"
        before_rev=$(git -C "$ROOT" rev-parse --short "$BEFORE_SHA")
        awk -v now="$now_rev" -v bef="$before_rev" '
            $1 == "httpsrv" || $1 == "before" {
                ipr[$1] = $3 / $2
                printf "| %s | %s | %d | %.0f | %.0f |\n", $1, ($1 == "httpsrv" ? now : bef), $2, $3, ipr[$1]
            }
            END {
                x = ipr["before"] / ipr["httpsrv"]
                pct = (x >= 1 ? 1 - 1 / x : 1 / x - 1) * 100
                if (pct < 0.05) how = "the two are within 0.05% of each other"
                else how = sprintf("the current tree executes %.1f%% %s instructions per request", pct, (x >= 1 ? "fewer" : "more"))
                printf "\nbefore / httpsrv: **%.3f** (> 1 favours the current tree; %s)\n", x, how
            }' "$WORK/callgrind.totals"
    fi

    if [[ $PEERS == 1 ]]; then
        dir="$WORK/nginx.callgrind"
        mkdir -p "$dir"
        port=$(free_port)
        write_nginx_conf "$dir" "$port"
        # one process: the request work happens where callgrind sees it
        sed -i 's/^master_process on;/master_process off;/' "$dir/nginx.conf"
        taskset -c "$SERVER_CPUS" valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.nginx.%p" \
            --dump-instr=no --collect-jumps=no --separate-threads=no \
            nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
        npid=$!
        STARTED_PIDS+=("$npid")
        for ((i = 0; i < 200; i++)); do
            curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/hello" && break
            sleep 0.2
        done
        callgrind_profile nginx "$npid" "$port"
        stop_pid "$npid"
    fi
fi

if [[ $PERF != 0 ]] && command -v perf >/dev/null &&
    perf record -e cpu-clock -o "$WORK/perf.probe" -- true >/dev/null 2>&1; then
    echo
    echo "### perf (cpu-clock samples of the server at full speed, kernel included)"
    data="$PROFILE_OUT/perf.data.httpsrv.$WORKLOAD"
    mod="$WORK/bin/bench_module.so=$WORK/corpus"
    taskset -c "$SERVER_CPUS" perf record -q -e cpu-clock -F 999 --call-graph dwarf,8192 -o "$data" -- \
        "$WORK/bin/httpsrvd" --listen 127.0.0.1:0 --module "$mod" --set threads=1 \
        --set keepalive_requests=100000000 --grace-ms 200 >"$WORK/perf.httpsrv.log" 2>&1 &
    ppid=$!
    STARTED_PIDS+=("$ppid")
    port=$(wait_port "$WORK/perf.httpsrv.log" "$ppid")
    reqs=$(load "$port" "$PROFILE_SECONDS")
    # perf ends when the server it started does: stop the server, then wait for perf
    spid=$(pgrep -P "$ppid" | head -1)
    [[ -n $spid ]] && kill -TERM "$spid"
    for ((i = 0; i < 100; i++)); do
        kill -0 "$ppid" 2>/dev/null || break
        sleep 0.1
    done
    wait "$ppid" 2>/dev/null || true
    echo
    echo "$reqs requests in ${PROFILE_SECONDS}s. Share of samples by object:"
    echo
    echo '```'
    perf report -i "$data" --stdio --no-children --sort dso -g none 2>/dev/null |
        grep -v '^#' | grep -v '^$' | awk 'NR <= 8'
    echo '```'
    echo
    echo "Top symbols by self time (k: kernel, .: user):"
    echo
    echo '```'
    perf report -i "$data" --stdio --no-children --sort dso,sym -g none 2>/dev/null |
        grep -v '^#' | grep -v '^$' | awk -v n="${TOP:-30}" 'NR <= n'
    echo '```'
    echo
    echo "Top symbols with children (inclusive; DWARF call graphs, inlined frames left out):"
    echo
    echo '```'
    perf report -i "$data" --stdio --children --sort sym -g none 2>/dev/null |
        grep -v '^#' | grep -v '^$' | grep -v '(inlined)' | awk -v n="${TOP:-45}" 'NR <= n'
    echo '```'
fi
# strace -c on a running server: $1 name, $2 PID to trace (nginx: the worker), $3 port.
# Appends "name syscall calls" lines to $WORK/syscalls.txt and the request count to
# $WORK/syscalls.reqs.
strace_count() {
    local name=$1 pid=$2 port=$3 out="$WORK/strace.$1.txt" spid reqs i
    load "$port" 1 >/dev/null
    strace -c -f -q -o "$out" -p "$pid" &
    spid=$!
    STARTED_PIDS+=("$spid")
    sleep 1
    reqs=$(load "$port" "$PROFILE_SECONDS")
    kill -INT "$spid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.1
    done
    wait "$spid" 2>/dev/null || true
    echo "$name $reqs" >>"$WORK/syscalls.reqs"
    awk -v n="$name" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {print n, $NF, $4}' "$out" >>"$WORK/syscalls.txt"
}

# perf stat on the syscall tracepoints of a running server, at full speed: $1 name, $2 PIDs
# (comma-separated), $3 port. Same output as strace_count, plus the context switches of the
# server ("context-switches") and of wrk ("client-context-switches").
SYSCALL_EVENTS=(recvfrom sendto sendmsg writev read write epoll_wait epoll_ctl setsockopt accept4)
perf_count() {
    local name=$1 pids=$2 port=$3 out="$WORK/perf-stat.$1.txt" cout="$WORK/perf-stat.$1.client.txt"
    local events=context-switches e spid wout="$WORK/wrk.$1.perf.txt" reqs
    for e in "${SYSCALL_EVENTS[@]}"; do events+=",syscalls:sys_enter_$e"; done
    load "$port" 1 >/dev/null
    perf stat -x, -e "$events" -p "$pids" -o "$out" -- sleep $((PROFILE_SECONDS + 1)) &
    spid=$!
    STARTED_PIDS+=("$spid")
    url_args "$port"
    timeout $((PROFILE_SECONDS + 60)) perf stat -x, -e context-switches -o "$cout" -- \
        taskset -c "$WRK_CPUS" wrk -t1 -c"$CONNS" -d"${PROFILE_SECONDS}s" --timeout 30s \
        "${URL_ARGS[@]}" >"$wout" 2>&1 || die "wrk failed: $(cat "$wout")"
    wait "$spid" 2>/dev/null || true
    reqs=$(awk '/ requests in / {print $1}' "$wout")
    echo "$name $reqs" >>"$WORK/syscalls.reqs"
    awk -F, -v n="$name" '$1 ~ /^[0-9]+$/ {sub("syscalls:sys_enter_", "", $3); print n, $3, $1}' \
        "$out" >>"$WORK/syscalls.txt"
    awk -F, -v n="$name" '$1 ~ /^[0-9]+$/ {print n, "client-" $3, $1}' "$cout" >>"$WORK/syscalls.txt"
}

if [[ ${STRACE:-1} == 1 ]]; then
    count=strace_count how="strace -c, $CONNS connections; strace slows the servers, the counts of sends and receives per request hold"
    if command -v perf >/dev/null &&
        perf stat -e syscalls:sys_enter_epoll_wait -o /dev/null -- true >/dev/null 2>&1; then
        count=perf_count how="perf stat at full speed, $CONNS connections, ${PROFILE_SECONDS}s; context switches of the server and of wrk"
    elif ! command -v strace >/dev/null; then
        count=
    fi
fi
if [[ -n ${count:-} ]]; then
    : >"$WORK/syscalls.txt"
    : >"$WORK/syscalls.reqs"
    start_httpsrv syscalls
    $count httpsrv "$SRV_PID" "$SRV_PORT"
    stop_pid "$SRV_PID"
    names=(httpsrv)
    if [[ $PEERS == 1 ]]; then
        if [[ $WORKLOAD != gzip* ]]; then
            start_floor syscalls
            $count floor "$SRV_PID" "$SRV_PORT"
            stop_pid "$SRV_PID"
            names+=(floor)
        fi
        start_nginx syscalls
        $count nginx "$(measure_pids nginx "$SRV_PID" | awk '{print $1}')" "$SRV_PORT"
        stop_pid "$SRV_PID"
        names+=(nginx)
    fi
    echo
    echo "### System calls per request ($how)"
    echo
    awk -v names="${names[*]}" -v reqsfile="$WORK/syscalls.reqs" '
        BEGIN { while ((getline l < reqsfile) > 0) { split(l, f, " "); reqs[f[1]] = f[2] } }
        {
            calls[$2, $1] = $3; if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2 }
            if ($2 !~ /context-switches/) total[$1] += $3
        }
        END {
            k = split(names, nm, " ")
            head = "| syscall"; sep = "| ---"
            for (j = 1; j <= k; j++) { head = head " | " nm[j]; sep = sep " | ---:" }
            print head " |"; print sep " |"
            for (i = 1; i <= n; i++) {
                line = "| " order[i]; keep = 0
                for (j = 1; j <= k; j++) {
                    v = (order[i], nm[j]) in calls ? calls[order[i], nm[j]] / reqs[nm[j]] : 0
                    if (v >= 0.01) keep = 1
                    line = line sprintf(" | %.2f", v)
                }
                if (keep) print line " |"
            }
            line = "| **all**"
            for (j = 1; j <= k; j++) line = line sprintf(" | **%.2f**", total[nm[j]] / reqs[nm[j]])
            print line " |"
        }' "$WORK/syscalls.txt"
fi

echo
echo "Raw files: $PROFILE_OUT (callgrind_annotate --inclusive=yes FILE; perf report -i FILE)"
