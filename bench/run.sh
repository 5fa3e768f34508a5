#!/usr/bin/env bash
# bench/run.sh - side-by-side benchmark: httpsrv (bench_module.c on httpsrvd) against
# nginx 1.22 + lua, libmicrohttpd and a bare epoll "floor", on 127.0.0.1 only.
#
#   bench/run.sh              full run (about 8 minutes)
#   bench/run.sh --quick      smoke run (1 to 2 minutes): 1 round of 1 s, fewer connections
#   THREADS=2 bench/run.sh    httpsrv threads=2, nginx 2 workers, mhd 2 threads, floor 2 loops
#
# Environment (defaults in brackets):
#   ROUNDS [3]  DURATION [5] s per wrk run  WARMUP [1] s per server before the rounds
#   WORKLOADS [hello pipeline chunks gzip10k gzipstream big idle latency]
#   SERVERS [httpsrv nginx mhd floor; with BEFORE: httpsrv before]   THREADS [1]
#   IDLE_CONNS [5000]  LAT_STREAMS [1000]  LAT_SECONDS [5]  LAT_PERIOD_MS [100]
#   NO_BUILD=1 use the existing target/release/httpsrvd (CARGO_TARGET_DIR is honoured)
#   KEEP=1 keep the temp directory   BEFORE=<git revision>, BEFORE_TARGET_DIR: see below
#
# What it measures, per workload and server, in rounds that alternate between the servers
# (the order rotates each round): requests per second (wrk's count over wrk's time) and
# server CPU time per request: utime + stime from /proc/PID/stat (nginx: its workers) read
# just before and just after each wrk run, divided by the requests wrk completed; the stime
# part is printed too ("of which kernel"): it differs between servers that make the same
# system calls, with how often each sleeps and wakes. "wrk busy" is wrk's own CPU time over
# the time and CPUs it had: near 100%, the client sets the pace, and requests per second
# cannot tell the servers apart (only their CPU per request can). Servers
# run pinned to CPU 0 (THREADS=2: CPUs 0,1), wrk to CPU 1 (THREADS=2: 0,1, two wrk threads).
# Every body is checked byte for byte before it is measured.
#
# Before/after (a change to the library must keep every row within 3% of before, or better):
#   BEFORE=main bench/run.sh              the current tree against revision main
#   BEFORE=HEAD~1 SERVERS="httpsrv before nginx" bench/run.sh
# BEFORE=<git revision> builds that revision's httpsrvd in a temporary git worktree (under
# the run's temp directory, removed at exit) with `cargo build --release` and
# CARGO_TARGET_DIR=BEFORE_TARGET_DIR [/work/target-before when /work is writable, else
# target/before], which is kept so that the next run does not build the dependencies again.
# It adds the server "before": started exactly as httpsrv (the same bench_module.so, built
# from the current bench_module.c and include/httpsrv.h, the same options and CPUs), only
# httpsrvd differs. SERVERS then defaults to "httpsrv before"; "before" takes part in the
# same alternating rounds as any server, also in idle (then measured ROUNDS times, the order
# rotating) and latency. The report ends with "httpsrv against before": for every row the
# ratio of the medians and the median of the per-round ratios (> 1 favours the current
# tree), and whether it is within 3% of before or better.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

bench_args "$@"

if [[ $QUICK == 1 ]]; then
    : "${ROUNDS:=1}" "${DURATION:=1}" "${WARMUP:=0}" "${IDLE_CONNS:=500}"
    : "${LAT_STREAMS:=200}" "${LAT_SECONDS:=2}"
fi
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
THREADS=${THREADS:-1}
WORKLOADS=${WORKLOADS:-hello pipeline chunks gzip10k gzipstream big idle latency}
BEFORE=${BEFORE:-}
if [[ -n $BEFORE ]]; then
    SERVERS=${SERVERS:-httpsrv before}
else
    SERVERS=${SERVERS:-httpsrv nginx mhd floor}
fi
[[ " $SERVERS " != *" before "* || -n $BEFORE ]] ||
    die "SERVERS lists before: set BEFORE=<git revision> to build it"
IDLE_CONNS=${IDLE_CONNS:-5000}
LAT_STREAMS=${LAT_STREAMS:-1000}
LAT_SECONDS=${LAT_SECONDS:-5}
LAT_PERIOD_MS=${LAT_PERIOD_MS:-100}
if [[ $THREADS == 1 ]]; then
    SERVER_CPUS=0 WRK_CPUS=1 WRK_THREADS=1 WRK_NCPUS=1
else
    SERVER_CPUS=0-$((THREADS - 1)) WRK_CPUS=0-$((THREADS - 1)) WRK_THREADS=$THREADS WRK_NCPUS=$THREADS
fi
CLIENT_CPUS=$WRK_CPUS # idle_one's client
CLK_TCK=$(getconf CLK_TCK)

WORK=$(mktemp -d /tmp/httpsrv-bench.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT TERM

# The whole run is bounded: a watchdog ends it past a generous estimate.
nwl=$(wc -w <<<"$WORKLOADS")
nsrv=$(wc -w <<<"$SERVERS")
# BEFORE: one more cargo build, idle measured ROUNDS times, two more latency runs per round
nbefore=0
[[ -n $BEFORE ]] && nbefore=1
start_watchdog "${TIME_LIMIT:-$((1500 + nbefore * (1200 + ROUNDS * (nsrv * 60 + 2 * (LAT_SECONDS + 15))) + nwl * nsrv * (ROUNDS * (DURATION + 6) + WARMUP + 10) + ROUNDS * 2 * (LAT_SECONDS + 15)))}"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < IDLE_CONNS + 100)); then
    ulimit -n $((IDLE_CONNS + 200)) 2>/dev/null || die "ulimit -n $(ulimit -n) is too low for $IDLE_CONNS connections"
fi

install_deps
build_all
if [[ -n $BEFORE ]]; then
    build_before "$BEFORE"
fi
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg), $(cpu_busy_pct) of both CPUs busy before we started"

# ---- the workloads --------------------------------------------------------------------

# The servers that take part in a workload.
workload_servers() {
    local all
    case $1 in
    gzip10k | gzipstream) all="httpsrv before nginx" ;; # libmicrohttpd has no gzip; the floor neither
    latency) all="httpsrv before floor" ;; # the floor sends the stamps from its loop: the kernel alone
    *) all="httpsrv before nginx mhd floor" ;;
    esac
    local s out=()
    for s in $SERVERS; do
        [[ " $all " == *" $s "* ]] && out+=("$s")
    done
    echo "${out[*]}"
}

# The wrk arguments of a workload against PORT, in WRK_ARGS.
wrk_args() {
    local w=$1 port=$2 url="http://127.0.0.1:$2"
    local conns=64
    [[ $QUICK == 1 ]] && conns=32
    WRK_ARGS=(-t"$WRK_THREADS" --timeout 10s)
    case $w in
    hello) WRK_ARGS+=(-c"$conns" "$url/hello") ;;
    pipeline) WRK_ARGS+=(-c"$conns" -s "$BENCH/pipeline.lua" "$url" -- /hello 16) ;;
    chunks) WRK_ARGS+=(-c"$conns" "$url/chunks") ;;
    gzip10k) WRK_ARGS+=(-c"$conns" -H 'Accept-Encoding: gzip' "$url/gzip10k") ;;
    gzipstream) WRK_ARGS+=(-c"$conns" -H 'Accept-Encoding: gzip' "$url/gzipstream") ;;
    big) WRK_ARGS+=(-c16 "$url/big") ;;
    *) die "unknown workload $w" ;;
    esac
}

# The expected (decoded) bodies, from the same corpus the servers read.
mkdir -p "$WORK/expect"
printf 'Hello, world!' >"$WORK/expect/hello"
head -c 16384 "$WORK/corpus/text.txt" >"$WORK/expect/chunks"
head -c 10240 "$WORK/corpus/text.txt" >"$WORK/expect/gzip10k"
cp "$WORK/corpus/text.txt" "$WORK/expect/gzipstream"
cp "$WORK/corpus/big.bin" "$WORK/expect/big"

# Checks that SERVER on PORT answers the workload's route with the expected bytes; records
# the size on the wire (head + body as sent) in $WORK/wire.tsv.
verify() {
    local w=$1 s=$2 port=$3 route=$1 enc=()
    [[ $w == pipeline ]] && route=hello
    [[ $w == gzip* ]] && enc=(--compressed)
    curl -s --max-time 10 "${enc[@]}" "http://127.0.0.1:$port/$route" -o "$WORK/got" ||
        die "$s: GET /$route failed"
    cmp -s "$WORK/got" "$WORK/expect/$route" ||
        die "$s: GET /$route: the body differs from the expected bytes"
    local hdr=()
    [[ $w == gzip* ]] && hdr=(-H 'Accept-Encoding: gzip')
    local sizes
    sizes=$(curl -s --max-time 10 "${hdr[@]}" -o "$WORK/got.raw" -D "$WORK/got.head" \
        -w '%{size_header} %{size_download}' "http://127.0.0.1:$port/$route")
    if [[ $w == gzip* ]]; then
        grep -qi '^content-encoding: gzip' "$WORK/got.head" || die "$s: /$route was not gzipped"
    fi
    printf '%s\t%s\t%s\n' "$w" "$s" "$sizes" >>"$WORK/wire.tsv"
}

# One wrk run; appends "workload server round requests seconds cpu_ticks errors kernel_ticks
# wrk_cpu_ms" to $WORK/rounds.tsv (cpu_ticks: user + kernel).
measure() {
    local w=$1 s=$2 round=$3 port=${PORTS[$2]} pids out
    pids=$(measure_pids "$s" "${PIDS[$s]}")
    wrk_args "$w" "$port"
    out="$WORK/wrk.$w.$s.$round.txt"
    local u0 k0 u1 k1
    # shellcheck disable=SC2086
    read -r u0 k0 < <(cpu_ticks $pids)
    children_times "$WORK/times.0"
    timeout $((DURATION + 30)) taskset -c "$WRK_CPUS" wrk -d"${DURATION}s" "${WRK_ARGS[@]}" >"$out" 2>&1 ||
        die "wrk failed against $s ($w): $(cat "$out")"
    children_times "$WORK/times.1"
    # shellcheck disable=SC2086
    read -r u1 k1 < <(cpu_ticks $pids)
    local reqs secs errors
    reqs=$(awk '/ requests in / {print $1}' "$out")
    secs=$(awk '/ requests in / {sub(/s,$/, "", $4); print $4}' "$out")
    errors=$(awk '/Non-2xx/ {e += $NF} /Socket errors/ {gsub(/,/, ""); e += $4 + $6 + $8 + $10} END {print e + 0}' "$out")
    [[ -n $reqs && -n $secs ]] || die "cannot read wrk's output: $(cat "$out")"
    local ticks=$((u1 - u0 + k1 - k0)) kernel=$((k1 - k0))
    local wrk_ms
    wrk_ms=$(($(children_ms "$WORK/times.1") - $(children_ms "$WORK/times.0")))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$s" "$round" "$reqs" "$secs" "$ticks" "$errors" "$kernel" "$wrk_ms" >>"$WORK/rounds.tsv"
    awk -v r="$reqs" -v t="$secs" -v c="$ticks" -v k="$kernel" -v hz="$CLK_TCK" -v w="$w" -v s="$s" -v n="$round" -v e="$errors" -v wm="$wrk_ms" -v wc="$WRK_NCPUS" \
        'BEGIN {printf "  %-10s %-8s round %d: %9.0f req/s %8.2f us CPU/req (kernel %.2f), wrk busy %.0f%%%s\n", w, s, n, r / t, c * 1e6 / hz / r, k * 1e6 / hz / r, wm / 10 / t / wc, (e > 0 ? "  (" e " errors)" : "")}' >&2
}

: >"$WORK/rounds.tsv"
: >"$WORK/wire.tsv"
: >"$WORK/idle.tsv"
: >"$WORK/latency.tsv"

log "work directory: $WORK"
log "rounds=$ROUNDS duration=${DURATION}s threads=$THREADS server CPUs=$SERVER_CPUS wrk CPUs=$WRK_CPUS"

throughput=()
for w in $WORKLOADS; do
    [[ $w == idle || $w == latency ]] || throughput+=("$w")
done

if ((${#throughput[@]} > 0)); then
    for s in $SERVERS; do
        start_server "$s" main
        log "$s: pid ${PIDS[$s]}, port ${PORTS[$s]}"
    done
    for w in "${throughput[@]}"; do
        read -r -a srvs <<<"$(workload_servers "$w")"
        ((${#srvs[@]} > 0)) || continue
        log "== $w: ${srvs[*]}"
        for s in "${srvs[@]}"; do
            verify "$w" "$s" "${PORTS[$s]}"
            if ((WARMUP > 0)); then
                wrk_args "$w" "${PORTS[$s]}"
                timeout $((WARMUP + 30)) taskset -c "$WRK_CPUS" wrk -d"${WARMUP}s" "${WRK_ARGS[@]}" >/dev/null 2>&1 ||
                    die "warm-up wrk failed against $s"
            fi
        done
        for ((r = 1; r <= ROUNDS; r++)); do
            n=${#srvs[@]}
            for ((i = 0; i < n; i++)); do
                measure "$w" "${srvs[$(((i + r - 1) % n))]}" "$r"
            done
        done
    done
    for s in $SERVERS; do
        stop_server "$s"
    done
fi

# ---- idle keep-alive connections: resident memory per connection -----------------------
# One measurement per server; ROUNDS of them, the order rotating, when "before" takes part
# (the before/after comparison wants per-round pairs).
IDLE_ROUNDS=1
[[ " $(workload_servers idle) " == *" before "* ]] && IDLE_ROUNDS=$ROUNDS
if [[ " $WORKLOADS " == *" idle "* ]]; then
    log "== idle: $IDLE_CONNS keep-alive connections"
    read -r -a srvs <<<"$(workload_servers idle)"
    for ((r = 1; r <= IDLE_ROUNDS; r++)); do
        n=${#srvs[@]}
        for ((i = 0; i < n; i++)); do
            s=${srvs[$(((i + r - 1) % n))]}
            # a server that answers none of the connections gets one more try on a fresh
            # process (libmicrohttpd without MHD_USE_TURBO did that), then the failure is recorded
            idle_one "$s" 1 "$r" || idle_one "$s" 2 "$r" ||
                printf '%s\t%s\tfailed\tfailed\t0\t%s\n' "$s" "$IDLE_CONNS" "$r" >>"$WORK/idle.tsv"
        done
    done
fi

# ---- flush latency: 1,000 streams flushed by a module thread ----------------------------
if [[ " $WORKLOADS " == *" latency "* && " $SERVERS " == *" httpsrv "* ]]; then
    log "== latency: $LAT_STREAMS streams, a flush every $LAT_PERIOD_MS ms each, ${LAT_SECONDS}s"
    runs=()
    for s in $(workload_servers latency); do
        start_server "$s" latency
        if [[ $s == httpsrv || $s == before ]]; then
            runs+=("$s:block" "$s:async")
        else
            runs+=("$s:-")
        fi
    done
    for ((r = 1; r <= ROUNDS; r++)); do
        n=${#runs[@]}
        for ((i = 0; i < n; i++)); do
            run=${runs[$(((i + r - 1) % n))]}
            s=${run%%:*} mode=${run#*:}
            out="$WORK/latency.$s.$mode.$r.txt"
            arg=()
            [[ $mode == async ]] && arg=(async)
            timeout $((LAT_SECONDS + 20)) taskset -c "$WRK_CPUS" "$WORK/bin/flush_latency" "${PORTS[$s]}" \
                "$LAT_STREAMS" "$LAT_SECONDS" "$LAT_PERIOD_MS" "${arg[@]}" >"$out" 2>&1 ||
                die "flush_latency failed against $s: $(cat "$out")"
            printf '%s\t%s\t%s\t%s\n' "$s" "$mode" "$r" "$(cat "$out")" >>"$WORK/latency.tsv"
            log "  $s $mode round $r: $(cat "$out")"
        done
    done
    for s in $(workload_servers latency); do
        stop_server "$s"
    done
fi

# ---- the report --------------------------------------------------------------------------
echo
echo "## Run: $(date -u '+%Y-%m-%d %H:%M UTC'), threads=$THREADS, rounds=$ROUNDS x ${DURATION}s$([[ $QUICK == 1 ]] && echo ', --quick')"
echo
machine_facts
echo "- other users of the machine: load average $LOAD_START; at the end $(cut -d' ' -f1-3 /proc/loadavg), $(cpu_busy_pct) busy after we stopped"
echo "- server CPUs: $SERVER_CPUS, wrk CPUs: $WRK_CPUS ($WRK_THREADS wrk thread(s))"

if [[ -s $WORK/rounds.tsv ]]; then
    echo
    echo "### Throughput and CPU per request (median of $ROUNDS rounds; min..max in brackets)"
    echo
    awk -F'\t' -v hz="$CLK_TCK" -v wire="$WORK/wire.tsv" -v wc="$WRK_NCPUS" '
    function median(list,    a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function lo(list,    a, n, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
    function hi(list,    a, n, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
    BEGIN {
        while ((getline line < wire) > 0) { split(line, f, "\t"); split(f[3], z, " "); size[f[1] "/" f[2]] = z[1] + z[2] }
    }
    {
        key = $1 "/" $2
        if (!(key in rps)) { order[++nk] = key; if (!($1 in seenw)) { seenw[$1] = 1; wl[++nw] = $1 } }
        rps[key] = rps[key] " " ($4 / $5)
        cpu[key] = cpu[key] " " ($6 * 1e6 / hz / $4)
        kern[key] = kern[key] " " ($8 * 1e6 / hz / $4)
        busy[key] = busy[key] " " ($9 / 10 / $5 / wc)
        rr[$1 "/" $2 "/" $3] = $4 / $5
        rc[$1 "/" $2 "/" $3] = $6 * 1e6 / hz / $4
        err[key] += $7
        if ($3 > nr) nr = $3
    }
    END {
        for (k in rps) { split(k, p, "/"); if (p[2] == "before") havebefore = 1; else if (p[2] != "httpsrv") havepeer = 1 }
        print "| workload | server | req/s | CPU us/req | of which kernel | wrk busy | bytes/response | errors |"
        print "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        for (i = 1; i <= nk; i++) {
            k = order[i]; split(k, p, "/")
            mr[k] = median(rps[k]); mc[k] = median(cpu[k])
            printf "| %s | %s | %.0f (%.0f..%.0f) | %.2f (%.2f..%.2f) | %.2f | %.0f%% | %s | %d |\n", p[1], p[2], mr[k], lo(rps[k]), hi(rps[k]), mc[k], lo(cpu[k]), hi(cpu[k]), median(kern[k]), median(busy[k]), (k in size) ? size[k] : "", err[k]
        }
        # a before/after run without peers: their tables would be empty (see "httpsrv against before")
        if (havebefore && !havepeer) exit
        print ""
        print "### httpsrv against each peer (req/s: ours / theirs; CPU: theirs / ours; > 1 favours httpsrv)"
        print ""
        print "| workload | vs nginx req/s | vs nginx CPU | vs mhd req/s | vs mhd CPU | vs floor req/s | vs floor CPU |"
        print "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        np = split("nginx mhd floor", peers, " ")
        for (i = 1; i <= nw; i++) {
            w = wl[i]; o = w "/httpsrv"
            if (!(o in mr)) continue
            line = "| " w
            for (j = 1; j <= np; j++) {
                q = w "/" peers[j]
                if (q in mr) line = line sprintf(" | %.2f | %.2f", mr[o] / mr[q], mc[q] / mc[o])
                else line = line " | - | -"
            }
            print line " |"
        }
        print ""
        print "### Targets (each ratio from medians; per-round ratios in brackets, rounds alternate servers)"
        print ""
        print "The verdict reads the ratio of the medians; the median of the per-round ratios pairs each"
        print "round of httpsrv with the peer measured next to it in time, so host drift cancels in it."
        print ""
        print "| workload | target | measured | per round | median per round | verdict |"
        print "| --- | --- | ---: | --- | ---: | --- |"
        nt = split("hello:cpu:nginx:1.15 pipeline:rps:nginx:4 chunks:cpu:nginx:1.15 gzip10k:cpu:nginx:1.3 gzipstream:cpu:nginx:1.15 big:rps:mhd:1.0", tg, " ")
        for (i = 1; i <= nt; i++) {
            split(tg[i], t, ":"); w = t[1]; o = w "/httpsrv"; q = w "/" t[3]
            if (!(o in mr) || !(q in mr)) continue
            v = t[2] == "cpu" ? mc[q] / mc[o] : mr[o] / mr[q]
            pr = ""; pv = ""
            for (r = 1; r <= nr; r++) {
                a = w "/httpsrv/" r; b = w "/" t[3] "/" r
                if (!(a in rr) || !(b in rr)) continue
                x = t[2] == "cpu" ? rc[b] / rc[a] : rr[a] / rr[b]
                pr = pr (pr == "" ? "" : ", ") sprintf("%.2f", x)
                pv = pv " " x
            }
            desc = t[2] == "cpu" ? sprintf("CPU/req <= %s / %s", t[3], t[4]) : sprintf("req/s >= %sx %s", t[4], t[3])
            verdict = v >= t[4] ? "met" : sprintf("MISSED by %.0f%%", (1 - v / t[4]) * 100)
            printf "| %s | %s | %.2f | %s | %.2f | %s |\n", w, desc, v, pr, median(pv), verdict
        }
    }' "$WORK/rounds.tsv"
fi

if [[ -s $WORK/idle.tsv ]]; then
    echo
    echo "### Idle keep-alive connections (VmRSS of the server; nginx: its worker)"
    echo
    if ((IDLE_ROUNDS > 1)); then
        echo "| server | round | connections | RSS before KiB | RSS after KiB | KiB per connection | still open at the end |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    else
        echo "| server | connections | RSS before KiB | RSS after KiB | KiB per connection | still open at the end |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    fi
    awk -F'\t' -v rounds="$IDLE_ROUNDS" '{ name = rounds > 1 ? $1 " | " $6 : $1 }
        $3 == "failed" {printf "| %s | %d | - | - | failed twice (no responses) | - |\n", name, $2; next}
        {printf "| %s | %d | %d | %d | %.2f | %d |\n", name, $2, $3, $4, ($4 - $3) / $2, $5}' "$WORK/idle.tsv"
    # with few connections the fixed costs (tables that grow in steps) dominate: judged at 5,000;
    # with several rounds, on their median
    awk -F'\t' '
    function median(list,    a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    $1 == "httpsrv" && $3 != "failed" { vs = vs " " ($4 - $3) / $2; conns = $2 }
    END {
        if (vs == "") exit
        v = median(vs)
        verdict = conns < 5000 ? "not judged: the target is for 5,000 connections" : (v <= 2 ? "met" : sprintf("MISSED by %.0f%%", (v / 2 - 1) * 100))
        printf "\nTarget: <= 2 KiB per idle connection: %.2f KiB, %s\n", v, verdict
    }' "$WORK/idle.tsv"
fi

if [[ -s $WORK/latency.tsv ]]; then
    echo
    echo "### Flush latency (flush -> bytes at the client; $LAT_STREAMS streams, one flush per stream every $LAT_PERIOD_MS ms)"
    echo
    echo "httpsrv: a module thread appends \"t=<ns>\" and calls the blocking httpsrv_response_flush (or"
    echo "httpsrv_response_flush_async); floor: its loop thread sends the stamp itself (no hand-over)."
    echo
    echo "| server | flush | round | samples | p50 us | p90 us | p99 us | p99.9 us | max us |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    awk -F'\t' '
    function median(list,    a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        delete v
        split($4, f, " "); for (i = 1; i < 20; i += 2) v[f[i]] = f[i + 1]
        mode = $2 == "block" ? "blocking flush" : $2 == "async" ? "flush_async" : "send from the loop"
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, mode, $3, v["samples"], v["p50_us"], v["p90_us"], v["p99_us"], v["p999_us"], v["max_us"]
        p99[$1 "/" $2] = p99[$1 "/" $2] " " v["p99_us"]
    } END {
        m = median(p99["httpsrv/block"])
        printf "\nTarget: p99 <= 1000 us (httpsrv, blocking flush, median of rounds): %.0f us, %s", m, m <= 1000 ? "met" : sprintf("MISSED: %.1fx the target", m / 1000)
        if ("httpsrv/async" in p99) printf "; flush_async %.0f us", median(p99["httpsrv/async"])
        if ("floor/-" in p99) printf "; the floor in the same run: %.0f us", median(p99["floor/-"])
        printf "\n"
    }' "$WORK/latency.tsv"
fi

# ---- httpsrv against before (BEFORE=<rev>) --------------------------------------------------
if [[ " $SERVERS " == *" before "* && " $SERVERS " == *" httpsrv "* ]]; then
    echo
    echo "### httpsrv against before (BEFORE=$BEFORE, $(git -C "$ROOT" rev-parse --short "$BEFORE_SHA"); > 1 favours the current tree)"
    echo
    echo "Each row: the ratio of the medians (req/s: now / before; CPU, memory and latency: before / now),"
    echo "the per-round ratios (each round of httpsrv with the round of before next to it in time), and their"
    echo "median, in which host drift cancels. The verdict reads the ratio of the medians: within 3% of"
    echo "before means >= 0.970.$([[ -s $WORK/idle.tsv || -s $WORK/latency.tsv ]] && echo ' Idle memory and latency come from their own rounds (see above).')"
    echo
    echo "| workload | measure | now | before | measured | per round | median per round | verdict |"
    echo "| --- | --- | ---: | ---: | ---: | --- | ---: | --- |"
    awk -F'\t' -v hz="$CLK_TCK" -v rounds="$WORK/rounds.tsv" -v idle="$WORK/idle.tsv" -v latency="$WORK/latency.tsv" '
    function median(list,    a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    # one value of row ROW (higher is better when HIGH) for server S (httpsrv or before) in round R
    function add(row, high, s, r, v) {
        if (s != "httpsrv" && s != "before") return
        if (!(row in hib)) { hib[row] = high; order[++nrow] = row }
        vals[row, s] = vals[row, s] " " v
        val[row, s, r] = v
        if (r > nr) nr = r
    }
    function ratio(row, now, bef) {
        if (hib[row]) return bef > 0 ? now / bef : -1
        return now > 0 ? bef / now : -1
    }
    BEGIN {
        FS = "\t"
        while ((getline line < rounds) > 0) {
            split(line, f, "\t")
            add(f[1] "|req/s", 1, f[2], f[3], f[4] / f[5])
            add(f[1] "|CPU us/req", 0, f[2], f[3], f[6] * 1e6 / hz / f[4])
        }
        while ((getline line < idle) > 0) {
            split(line, f, "\t")
            if (f[3] != "failed") add("idle|KiB per connection", 0, f[1], f[6], (f[4] - f[3]) / f[2])
        }
        while ((getline line < latency) > 0) {
            split(line, f, "\t")
            delete v
            n = split(f[4], g, " "); for (i = 1; i < n; i += 2) v[g[i]] = g[i + 1]
            mode = f[2] == "block" ? "blocking flush" : "flush_async"
            add("latency|p50 us, " mode, 0, f[1], f[3], v["p50_us"])
            add("latency|p99 us, " mode, 0, f[1], f[3], v["p99_us"])
        }
        worse = 0
        for (i = 1; i <= nrow; i++) {
            row = order[i]; split(row, p, "|")
            if (!((row, "httpsrv") in vals) || !((row, "before") in vals)) continue
            now = median(vals[row, "httpsrv"]); bef = median(vals[row, "before"])
            x = ratio(row, now, bef)
            pr = ""; pv = ""
            for (r = 1; r <= nr; r++) {
                if (!((row, "httpsrv", r) in val) || !((row, "before", r) in val)) continue
                y = ratio(row, val[row, "httpsrv", r], val[row, "before", r])
                pr = pr (pr == "" ? "" : ", ") sprintf("%.3f", y)
                pv = pv " " y
            }
            fmt = hib[row] ? "%.0f" : "%.2f"
            if (x < 0) verdict = "-"
            else if (x >= 1.03) verdict = sprintf("better by %.1f%%", (x - 1) * 100)
            else if (x >= 0.97) verdict = "within 3%"
            else { verdict = sprintf("WORSE by %.1f%%", (1 - x) * 100); worse++; bad = bad (bad == "" ? "" : "; ") p[1] " " p[2] }
            printf "| %s | %s | " fmt " | " fmt " | %.3f | %s | %s | %s |\n", p[1], p[2], now, bef, x, pr, (pv == "" ? "-" : sprintf("%.3f", median(pv))), verdict
            rows++
        }
        if (rows == 0) print "| - | no row with both httpsrv and before | | | | | | |"
        else if (worse == 0) printf "\nVerdict: all %d rows within 3%% of before, or better.\n", rows
        else printf "\nVerdict: %d of %d rows more than 3%% worse than before: %s.\n", worse, rows, bad
    }'
fi

if [[ -s $WORK/rounds.tsv ]]; then
    echo
    echo "### Raw rounds (workload, server, round, requests, seconds, CPU ticks at ${CLK_TCK} Hz, errors, of which kernel ticks, wrk CPU ms)"
    echo
    echo '```'
    cat "$WORK/rounds.tsv"
    echo '```'
fi
