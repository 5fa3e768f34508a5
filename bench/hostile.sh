#!/usr/bin/env bash
# bench/hostile.sh - hostile clients against httpsrv and nginx, side by side, on 127.0.0.1
# only: the server's peak memory under each attack, and whether a well-behaved client kept
# being served meanwhile (its latency percentiles). About 8 minutes with three servers.
#
#   bench/hostile.sh                        httpsrv (this tree) and nginx
#   BEFORE=2a0e94f bench/hostile.sh         ... and "before": that revision's httpsrvd
#   HTTPSRVD=/path/httpsrvd bench/hostile.sh
#                                           ... and "before": that binary (no build)
#   ATTACKS="upload gzipbig" bench/hostile.sh
#                                           some attacks only
#
# The attacks (bench/hostile.c; each on a freshly started server, one after the other):
#   upload     UPLOAD_CLIENTS [300] clients each POST a UPLOAD_BYTES [1048576] body to a
#              buffered route (/upload: it answers the body's length and CRC-32, which the
#              client checks), trickled evenly over UPLOAD_SECONDS [20], so all bodies are in
#              the server at once
#   gzip10k, gzipstream, gzipbig
#              GZIP_REQUESTS [2000] gzip responses from pool threads (/gzip10k/pool: 10 KiB in
#              one piece; /gzipstream/pool: 20 KiB flushed every 1 KiB; /gzipbig/pool: 256 KiB
#              flushed every 64 KiB; bench_module.c) over GZIP_CONNS [256] keep-alive
#              connections, so every pool thread compresses
#   slowloris  SLOW_CONNS [500] connections sending a request head one byte every 2 s
#   flood      FLOOD_CONNS [20] connections writing pipelined GET /hello and never reading
#   churn      CHURN_CONNS [50] at a time: connect, request, then read and close, close at
#              once, or reset
#   halfclose  HALF_CONNS [20] clients each on /hello and /hello/pool: request, then
#              shutdown(SHUT_WR), then read to the end (RFC 9112 9.6: the answer must come)
# slowloris, flood and churn last ATTACK_SECONDS [15].
#
# Meanwhile a probe (one keep-alive client, GET /hello every PROBE_PERIOD_MS [20] ms, 2 s
# timeout) measures latency. Memory is sampled every 0.1 s from /proc/PID/status: VmRSS and
# RssAnon (anonymous memory: the heap, not file pages such as a mapped spool file), for
# nginx summed over its workers. "before" is read once the server answered a first request,
# "after" 2 s after the attack ended (what the server keeps).
#
# Environment: THREADS [1] (httpsrv threads=, nginx workers; servers pinned to CPU 0, the
# clients to CPU 1), SERVERS [httpsrv nginx; with BEFORE or HTTPSRVD: before httpsrv nginx],
# NO_BUILD=1 (use the existing release build; CARGO_TARGET_DIR is honoured), KEEP=1,
# BEFORE_TARGET_DIR (see bench/run.sh). Prints a Markdown report on stdout.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

for arg in "$@"; do
    case $arg in
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument: $arg (try --help)" ;;
    esac
done

THREADS=${THREADS:-1}
BEFORE=${BEFORE:-}
HTTPSRVD=${HTTPSRVD:-}
if [[ -n $BEFORE || -n $HTTPSRVD ]]; then
    SERVERS=${SERVERS:-before httpsrv nginx}
else
    SERVERS=${SERVERS:-httpsrv nginx}
fi
ATTACKS=${ATTACKS:-upload gzip10k gzipstream gzipbig slowloris flood churn halfclose}
UPLOAD_CLIENTS=${UPLOAD_CLIENTS:-300}
UPLOAD_BYTES=${UPLOAD_BYTES:-1048576}
UPLOAD_SECONDS=${UPLOAD_SECONDS:-20}
GZIP_REQUESTS=${GZIP_REQUESTS:-2000}
GZIP_CONNS=${GZIP_CONNS:-256}
SLOW_CONNS=${SLOW_CONNS:-500}
FLOOD_CONNS=${FLOOD_CONNS:-20}
CHURN_CONNS=${CHURN_CONNS:-50}
HALF_CONNS=${HALF_CONNS:-20}
ATTACK_SECONDS=${ATTACK_SECONDS:-15}
PROBE_PERIOD_MS=${PROBE_PERIOD_MS:-20}
if [[ $THREADS == 1 ]]; then
    SERVER_CPUS=0 CLIENT_CPUS=1
else
    SERVER_CPUS=0-$((THREADS - 1)) CLIENT_CPUS=0-$((THREADS - 1))
fi

WORK=$(mktemp -d /tmp/httpsrv-hostile.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT TERM

# The whole run is bounded.
nsrv=$(wc -w <<<"$SERVERS")
TIME_LIMIT=${TIME_LIMIT:-$((2400 + nsrv * (UPLOAD_SECONDS + 4 * ATTACK_SECONDS + 400)))}
start_watchdog "$TIME_LIMIT"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
most_conns=$((SLOW_CONNS > UPLOAD_CLIENTS ? SLOW_CONNS : UPLOAD_CLIENTS))
(($(ulimit -n) > most_conns + 100)) || die "ulimit -n $(ulimit -n) is too low for $most_conns connections"

install_deps
build_all
if [[ -n $HTTPSRVD ]]; then
    [[ -x $HTTPSRVD ]] || die "HTTPSRVD=$HTTPSRVD is not an executable"
    cp "$HTTPSRVD" "$WORK/bin/httpsrvd-before"
elif [[ -n $BEFORE ]]; then
    build_before "$BEFORE"
fi
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg), $(cpu_busy_pct) of both CPUs busy before we started"

# "VmRSS RssAnon" in KiB, summed over the PIDs given.
mem_kib() {
    local pid rss=0 anon=0 r a
    for pid in "$@"; do
        read -r r a < <(awk '/^VmRSS:/ {r = $2} /^RssAnon:/ {a = $2} END {print r + 0, a + 0}' "/proc/$pid/status" 2>/dev/null || echo "0 0")
        rss=$((rss + r)) anon=$((anon + a))
    done
    echo "$rss $anon"
}

# Samples mem_kib of the PIDs every 0.1 s into FILE until killed.
sample_mem() {
    local file=$1
    shift
    while :; do
        mem_kib "$@" >>"$file"
        sleep 0.1
    done
}

# The attack's client command line against PORT, in CLIENT.
attack_cmd() {
    local a=$1 port=$2 h="$WORK/bin/hostile"
    case $a in
    upload) CLIENT=("$h" upload "$port" "$UPLOAD_CLIENTS" "$UPLOAD_BYTES" "$UPLOAD_SECONDS") ;;
    gzip*) CLIENT=("$h" gzip "$port" "/$a/pool" "$GZIP_CONNS" "$GZIP_REQUESTS") ;;
    slowloris) CLIENT=("$h" slowloris "$port" "$SLOW_CONNS" "$ATTACK_SECONDS") ;;
    flood) CLIENT=("$h" flood "$port" "$FLOOD_CONNS" "$ATTACK_SECONDS") ;;
    churn) CLIENT=("$h" churn "$port" "$CHURN_CONNS" "$ATTACK_SECONDS") ;;
    halfclose) CLIENT=(sh -c "'$h' halfclose $port /hello $HALF_CONNS | sed 's/^/inline: /'; '$h' halfclose $port /hello/pool $HALF_CONNS | sed 's/^/pool: /'") ;;
    *) die "unknown attack $a" ;;
    esac
}

: >"$WORK/results.tsv"
log "work directory: $WORK"

# One attack on a fresh server; appends a line to results.tsv.
run_attack() {
    local a=$1 s=$2 pids port before after peak_rss peak_anon result probe sampler prober
    "start_$s" "$a"
    local pid=$SRV_PID
    port=$SRV_PORT
    pids=$(measure_pids "$s" "$pid")
    # A first request of each kind, so that lazily built state is in "before".
    curl -s --max-time 5 -o /dev/null "http://127.0.0.1:$port/hello" || die "$s: /hello failed"
    curl -s --max-time 5 -o /dev/null -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/gzip10k/pool" ||
        die "$s: /gzip10k/pool failed"
    sleep 0.5
    # shellcheck disable=SC2086
    before=$(mem_kib $pids)
    : >"$WORK/mem.$a.$s"
    # shellcheck disable=SC2086
    sample_mem "$WORK/mem.$a.$s" $pids &
    sampler=$!
    STARTED_PIDS+=("$sampler")
    taskset -c "$CLIENT_CPUS" "$WORK/bin/hostile" probe "$port" /hello 3600 "$PROBE_PERIOD_MS" \
        >"$WORK/probe.$a.$s" 2>&1 &
    prober=$!
    STARTED_PIDS+=("$prober")
    sleep 0.5
    attack_cmd "$a" "$port"
    log "  $s: $a"
    timeout $((UPLOAD_SECONDS + ATTACK_SECONDS + 180)) taskset -c "$CLIENT_CPUS" "${CLIENT[@]}" \
        >"$WORK/attack.$a.$s" 2>"$WORK/attack.$a.$s.err" || true
    kill -TERM "$prober" 2>/dev/null || true
    wait "$prober" 2>/dev/null || true
    sleep 2
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    # shellcheck disable=SC2086
    after=$(mem_kib $pids)
    read -r peak_rss peak_anon < <(awk '$1 > r {r = $1} $2 > a {a = $2} END {print r + 0, a + 0}' "$WORK/mem.$a.$s")
    result=$(tr '\n' ' ' <"$WORK/attack.$a.$s" | sed 's/ *$//')
    [[ -n $result ]] || result="client failed: $(head -c 200 "$WORK/attack.$a.$s.err")"
    probe=$(cat "$WORK/probe.$a.$s")
    kill -0 "$pid" 2>/dev/null || result="$result; THE SERVER DIED"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$a" "$s" "$before" "$peak_rss $peak_anon" "$after" \
        "$result" "$probe" "$(wc -l <"$WORK/mem.$a.$s")" >>"$WORK/results.tsv"
    log "  $s: before $before, peak $peak_rss $peak_anon, after $after KiB (RSS anon); $result; probe: $probe"
    stop_pid "$pid"
}

for a in $ATTACKS; do
    log "== $a"
    for s in $SERVERS; do
        run_attack "$a" "$s"
    done
done

# ---- the report --------------------------------------------------------------------------
echo
echo "## Hostile clients: $(date -u '+%Y-%m-%d %H:%M UTC'), threads=$THREADS"
echo
machine_facts
[[ -n $HTTPSRVD ]] && echo "- before: HTTPSRVD=$HTTPSRVD"
echo "- other users of the machine: load average $LOAD_START; at the end $(cut -d' ' -f1-3 /proc/loadavg), $(cpu_busy_pct) busy after we stopped"
echo "- server CPUs: $SERVER_CPUS, client CPUs: $CLIENT_CPUS; probe: GET /hello every $PROBE_PERIOD_MS ms on one keep-alive connection"
echo
echo "Memory in MiB: RSS and anonymous memory (RssAnon) of the server (nginx: its workers) once it"
echo "answered a first request, the peak during the attack (sampled every 0.1 s), and 2 s after it."
echo "\"anon growth\" is peak (after) minus before."
echo
echo "| attack | server | RSS before | RSS peak | anon before | anon peak | anon growth peak | anon growth after | attack's outcome | probe: answered, failed | probe p50 / p99 / max ms |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
awk -F'\t' '
function mib(k) { return sprintf("%.1f", k / 1024) }
{
    split($3, b, " "); split($4, p, " "); split($5, f, " ")
    delete v
    n = split($7, kv, " ")
    for (i = 1; i <= n; i++) { split(kv[i], x, "="); v[x[1]] = x[2] }
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s, %s | %s / %s / %s |\n", $1, $2, mib(b[1]), mib(p[1]), mib(b[2]), mib(p[2]), mib(p[2] - b[2]), mib(f[2] - b[2]), $6, v["requests"], v["failures"], v["p50_ms"], v["p99_ms"], v["max_ms"]
}' "$WORK/results.tsv"
