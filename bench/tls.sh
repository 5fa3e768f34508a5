#!/usr/bin/env bash
# bench/tls.sh - TLS side by side: httpsrv (bench_module.c on httpsrvd --tls) against nginx
# 1.22's ssl listener (the same lua locations as bench/run.sh), on 127.0.0.1 only.
#
#   bench/tls.sh              full run (about 10 minutes on a quiet host)
#   bench/tls.sh --quick      smoke run: 1 round, small counts, 1,000 idle connections
#
# Environment (defaults in brackets):
#   ROUNDS [5]  WORKLOADS [hello handshake big idle]  SERVERS [httpsrv nginx]
#   HELLO_N [100000] requests per hello round   HANDSHAKE_N [4000] connections per round
#   BIG_N [1500] 1 MiB responses per round      IDLE_CONNS [10000]  IDLE_ROUNDS [2]
#   TLS13_SUITE [TLS_AES_128_GCM_SHA256]  TLS_GROUP [X25519]
#   NO_BUILD=1 use the existing release build (CARGO_TARGET_DIR is honoured)  KEEP=1
#
# Both servers get the same certificate, made at run time with openssl: ECDSA P-256 (SHA-256
# signatures), self-signed for bench.test. The only TLS 1.3 suite the client offers is
# TLS13_SUITE and the only group TLS_GROUP: httpsrv has no cipher option, so the client's
# offer pins it; nginx is pinned on its side too (ssl_conf_command Ciphersuites,
# ssl_ecdh_curve). Neither resumes sessions (httpsrv tls_session_resumption=off; nginx
# ssl_session_cache off, ssl_session_tickets off). Every h2load run prints what it negotiated
# and the report lists it; a run that negotiated something else stops the benchmark.
#
# Workloads (the client is h2load --h1 from nghttp2-client, HTTP/1.1 over TLS, one thread):
#   hello      keep-alive GET /hello, 64 connections: server CPU per request
#   handshake  GET /hello with Connection: close, 16 clients: every request is a new TCP
#              connection and a full TLS 1.3 handshake (ECDHE + ECDSA signature), then the
#              request and close_notify; server CPU per handshake
#   big        keep-alive GET /big (1 MiB), 16 connections: requests per second
#   idle       bench/idle_conns.c with tls (OpenSSL): IDLE_CONNS connections, each with a
#              handshake and one request, then idle: the server's resident memory per
#              connection
# CPU is utime + stime from /proc/PID/stat (nginx: its worker) around each run, divided by the
# requests h2load completed. Rounds alternate between the servers, the order rotating each
# round. Servers run pinned to CPU 0, the client to CPU 1.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

bench_args "$@"
if [[ $QUICK == 1 ]]; then
    : "${ROUNDS:=1}" "${HELLO_N:=20000}" "${HANDSHAKE_N:=500}" "${BIG_N:=200}"
    : "${IDLE_CONNS:=1000}" "${IDLE_ROUNDS:=1}"
fi
ROUNDS=${ROUNDS:-5}
WORKLOADS=${WORKLOADS:-hello handshake big idle}
SERVERS=${SERVERS:-httpsrv nginx}
HELLO_N=${HELLO_N:-100000}
HANDSHAKE_N=${HANDSHAKE_N:-4000}
BIG_N=${BIG_N:-1500}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_ROUNDS=${IDLE_ROUNDS:-2}
THREADS=1 SERVER_CPUS=0 CLIENT_CPUS=1
CLK_TCK=$(getconf CLK_TCK)
# One h2load run may take this long at most.
RUN_LIMIT=120

WORK=$(mktemp -d /tmp/httpsrv-tls-bench.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT TERM
nwl=$(wc -w <<<"$WORKLOADS")
start_watchdog "${TIME_LIMIT:-$((1500 + nwl * ROUNDS * 2 * (RUN_LIMIT / 2) + IDLE_ROUNDS * 2 * 150))}"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= IDLE_CONNS + 100)) ||
    die "ulimit -n $(ulimit -n) is too low for $IDLE_CONNS connections"

install_deps nghttp2-client openssl
build_all
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg), $(cpu_busy_pct) of both CPUs busy before we started"
# The 1-minute load average every 5 s while we run (ours counts too: a server and a client).
(while sleep 5; do cut -d' ' -f1 /proc/loadavg; done) >"$WORK/load.txt" 2>/dev/null &
STARTED_PIDS+=("$!")

# The certificate, made for this run only.
mkdir -p "$WORK/tls"
CERT=$WORK/tls/cert.pem KEY=$WORK/tls/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench.test -addext subjectAltName=DNS:bench.test -keyout "$KEY" \
    -out "$CERT" 2>/dev/null || die "openssl could not make the certificate"
chmod 644 "$KEY" # nginx's workers run as another user

HTTPSRVD_LISTEN=(--tls "127.0.0.1:0=$CERT:$KEY" --set tls_session_resumption=off)
NGINX_TLS="$CERT $KEY"

# Checks a server's bodies and what its handshake is made of; a line per server goes to
# $WORK/facts.txt.
verify() {
    local s=$1 port=$2 facts reused
    curl -sk --max-time 10 "https://127.0.0.1:$port/hello" -o "$WORK/got" || die "$s: GET /hello failed"
    [[ $(cat "$WORK/got") == "Hello, world!" ]] || die "$s: /hello differs"
    curl -sk --max-time 10 "https://127.0.0.1:$port/big" -o "$WORK/got" || die "$s: GET /big failed"
    cmp -s "$WORK/got" "$WORK/corpus/big.bin" || die "$s: /big differs from the corpus"
    facts=$(timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername bench.test \
        -ciphersuites "$TLS13_SUITE" -groups "$TLS_GROUP" </dev/null 2>&1 |
        awk -F': ' '/^Peer signature type|^Peer signing digest|^Server Temp Key|^New, / {printf "%s%s", sep, $0; sep = "; "}')
    # -reconnect: the first connection and five more, each "New" unless resumed
    reused=$(timeout 20 openssl s_client -connect "127.0.0.1:$port" -servername bench.test \
        -ciphersuites "$TLS13_SUITE" -groups "$TLS_GROUP" -reconnect </dev/null 2>&1 | grep -c '^Reused' || true)
    printf -- '- %s: %s; sessions resumed by openssl s_client -reconnect: %s of 5\n' "$s" "$facts" "$reused" >>"$WORK/facts.txt"
}

# h2load's "finished in" time in seconds (it prints us, ms or s).
h2load_seconds() {
    awk '/^finished in/ {
        t = $3; sub(/,$/, "", t)
        if (t ~ /us$/) { sub(/us$/, "", t); t /= 1e6 } else if (t ~ /ms$/) { sub(/ms$/, "", t); t /= 1e3 } else sub(/s$/, "", t)
        print t }' "$1"
}

# One h2load run; appends "workload server round done seconds cpu_ticks errors kernel_ticks
# client_cpu_ms" to $WORK/rounds.tsv.
measure() {
    local w=$1 s=$2 round=$3 port=${PORTS[$2]} pids out args
    pids=$(measure_pids "$s" "${PIDS[$s]}")
    args=(--h1 -t1 --tls13-ciphers="$TLS13_SUITE" --groups="$TLS_GROUP")
    case $w in
    hello) args+=(-c64 -n"$HELLO_N" "https://127.0.0.1:$port/hello") ;;
    handshake) args+=(-c16 -n"$HANDSHAKE_N" -H 'Connection: close' "https://127.0.0.1:$port/hello") ;;
    big) args+=(-c16 -n"$BIG_N" "https://127.0.0.1:$port/big") ;;
    *) die "unknown workload $w" ;;
    esac
    out="$WORK/h2load.$w.$s.$round.txt"
    local u0 k0 u1 k1
    # shellcheck disable=SC2086
    read -r u0 k0 < <(cpu_ticks $pids)
    children_times "$WORK/times.0"
    timeout "$RUN_LIMIT" taskset -c "$CLIENT_CPUS" h2load "${args[@]}" >"$out" 2>&1 ||
        die "h2load failed against $s ($w): $(tail -5 "$out")"
    children_times "$WORK/times.1"
    # shellcheck disable=SC2086
    read -r u1 k1 < <(cpu_ticks $pids)
    local done secs errors cipher group
    done=$(awk '/^requests:/ {print $8}' "$out")
    errors=$(awk '/^requests:/ {print $12 + $14 + $16}' "$out")
    secs=$(h2load_seconds "$out")
    cipher=$(awk '/^Cipher:/ {print $2}' "$out")
    group=$(awk '/^Server Temp Key:/ {print $4}' "$out")
    [[ -n $done && -n $secs ]] || die "cannot read h2load's output: $(cat "$out")"
    [[ $cipher == "$TLS13_SUITE" && $group == "$TLS_GROUP" ]] ||
        die "$s ($w) negotiated $cipher with $group, not $TLS13_SUITE with $TLS_GROUP"
    local client_ms=$(($(children_ms "$WORK/times.1") - $(children_ms "$WORK/times.0")))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$s" "$round" "$done" "$secs" \
        "$((u1 - u0 + k1 - k0))" "$errors" "$((k1 - k0))" "$client_ms" >>"$WORK/rounds.tsv"
    awk -v r="$done" -v t="$secs" -v c="$((u1 - u0 + k1 - k0))" -v k="$((k1 - k0))" -v hz="$CLK_TCK" \
        -v w="$w" -v s="$s" -v n="$round" -v e="$errors" -v cm="$client_ms" \
        'BEGIN {printf "  %-9s %-7s round %d: %8.0f req/s %9.2f us CPU/req (kernel %.2f), client busy %.0f%%%s\n", w, s, n, r / t, c * 1e6 / hz / r, k * 1e6 / hz / r, cm / 10 / t, (e > 0 ? "  (" e " errors)" : "")}' >&2
}

: >"$WORK/rounds.tsv"
: >"$WORK/idle.tsv"
: >"$WORK/facts.txt"
log "work directory: $WORK"
log "rounds=$ROUNDS, $TLS13_SUITE with $TLS_GROUP, server CPU $SERVER_CPUS, client CPU $CLIENT_CPUS"

throughput=()
for w in $WORKLOADS; do
    [[ $w == idle ]] || throughput+=("$w")
done
read -r -a srvs <<<"$SERVERS"
if ((${#throughput[@]} > 0)); then
    for s in "${srvs[@]}"; do
        start_server "$s" main
        log "$s: pid ${PIDS[$s]}, port ${PORTS[$s]}"
        verify "$s" "${PORTS[$s]}"
    done
    for w in "${throughput[@]}"; do
        log "== $w"
        for ((r = 1; r <= ROUNDS; r++)); do
            n=${#srvs[@]}
            for ((i = 0; i < n; i++)); do
                measure "$w" "${srvs[$(((i + r - 1) % n))]}" "$r"
            done
        done
    done
    for s in "${srvs[@]}"; do
        stop_server "$s"
    done
fi

if [[ " $WORKLOADS " == *" idle "* ]]; then
    log "== idle: $IDLE_CONNS TLS connections"
    for ((r = 1; r <= IDLE_ROUNDS; r++)); do
        n=${#srvs[@]}
        for ((i = 0; i < n; i++)); do
            s=${srvs[$(((i + r - 1) % n))]}
            idle_one "$s" 1 "$r" tls "$TLS13_SUITE" "$TLS_GROUP" || die "$s: idle TLS connections failed"
        done
    done
fi

# ---- the report --------------------------------------------------------------------------
AWK_STATS='
function median(list,    a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function lo(list,    a, n, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
function hi(list,    a, n, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
'
echo
echo "## TLS run: $(date -u '+%Y-%m-%d %H:%M UTC'), rounds=$ROUNDS$([[ $QUICK == 1 ]] && echo ', --quick')"
echo
machine_facts
echo "- h2load: $(h2load --version | awk '{print $2}'), OpenSSL $(openssl version | awk '{print $2}') (h2load, idle_conns, openssl s_client)"
echo "- other users of the machine: load average $LOAD_START; at the end $(cut -d' ' -f1-3 /proc/loadavg), $(cpu_busy_pct) busy after we stopped"
awk '{ v[++n] = $1 } END { if (!n) exit; for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    printf "- load average (1 min) during the run, every 5 s: min %s, median %s, max %s (%d samples; our server and client add up to 2)\n", v[1], v[int((n + 1) / 2)], v[n], n }' "$WORK/load.txt"
echo "- server CPU: $SERVER_CPUS, client CPU: $CLIENT_CPUS; certificate ECDSA P-256 (made at run time), client offers only $TLS13_SUITE and $TLS_GROUP, no resumption"
[[ -s $WORK/facts.txt ]] && cat "$WORK/facts.txt"

if [[ -s $WORK/rounds.tsv ]]; then
    echo
    echo "| workload | server | req/s | CPU us per request | of which kernel | client busy | errors |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    awk -F'\t' -v hz="$CLK_TCK" "$AWK_STATS"'
    {
        key = $1 "/" $2
        if (!(key in rps)) order[++nk] = key
        rps[key] = rps[key] " " ($4 / $5)
        cpu[key] = cpu[key] " " ($6 * 1e6 / hz / $4)
        kern[key] = kern[key] " " ($8 * 1e6 / hz / $4)
        busy[key] = busy[key] " " ($9 / 10 / $5)
        err[key] += $7
    }
    END {
        for (i = 1; i <= nk; i++) {
            k = order[i]; split(k, p, "/")
            printf "| %s | %s | %.0f (%.0f..%.0f) | %.2f (%.2f..%.2f) | %.2f | %.0f%% | %d |\n", p[1], p[2], median(rps[k]), lo(rps[k]), hi(rps[k]), median(cpu[k]), lo(cpu[k]), hi(cpu[k]), median(kern[k]), median(busy[k]), err[k]
        }
    }' "$WORK/rounds.tsv"
fi
if [[ -s $WORK/idle.tsv ]]; then
    echo
    echo "| idle | server | round | connections | RSS before KiB | RSS after KiB | KiB per connection | still open at the end |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    awk -F'\t' '{printf "| idle | %s | %d | %d | %d | %d | %.2f | %d |\n", $1, $6, $2, $3, $4, ($4 - $3) / $2, $5}' "$WORK/idle.tsv"
fi

echo
echo "### Targets (medians; per-round ratios in brackets, rounds alternate servers)"
echo
echo "| workload | target | measured | per round | verdict |"
echo "| --- | --- | ---: | --- | --- |"
# target rows: workload:measure:factor; the measured value is a ratio, > 1 favours httpsrv
awk -F'\t' -v hz="$CLK_TCK" -v idle="$WORK/idle.tsv" "$AWK_STATS"'
{
    v[$1, "rps", $2] = v[$1, "rps", $2] " " ($4 / $5)
    v[$1, "cpu", $2] = v[$1, "cpu", $2] " " ($6 * 1e6 / hz / $4)
    one[$1, "rps", $2, $3] = $4 / $5
    one[$1, "cpu", $2, $3] = $6 * 1e6 / hz / $4
    if ($3 > nr) nr = $3
}
END {
    while ((getline line < idle) > 0) {
        split(line, f, "\t")
        x = (f[4] - f[3]) / f[2]
        v["idle", "mem", f[1]] = v["idle", "mem", f[1]] " " x
        one["idle", "mem", f[1], f[6]] = x
        if (f[6] > nr) nr = f[6]
    }
    nt = split("hello:cpu:1.1:CPU/request <= nginx / 1.1 handshake:cpu:1.0:CPU/handshake <= nginx big:rps:1.0:req/s >= nginx idle:mem:1.0:KiB/connection <= nginx", t, " ")
    # the descriptions hold spaces: rebuild the four-field rows
    n = 0
    for (i = 1; i <= nt; i++) { if (t[i] ~ /^[a-z]+:(cpu|rps|mem):/) row[++n] = t[i]; else row[n] = row[n] " " t[i] }
    for (i = 1; i <= n; i++) {
        split(row[i], f, ":"); w = f[1]; m = f[2]; want = f[3]; desc = f[4]
        if (!((w, m, "httpsrv") in v) || !((w, m, "nginx") in v)) continue
        a = median(v[w, m, "httpsrv"]); b = median(v[w, m, "nginx"])
        x = m == "rps" ? a / b : b / a
        pr = ""
        for (r = 1; r <= nr; r++) {
            if (!((w, m, "httpsrv", r) in one) || !((w, m, "nginx", r) in one)) continue
            y = m == "rps" ? one[w, m, "httpsrv", r] / one[w, m, "nginx", r] : one[w, m, "nginx", r] / one[w, m, "httpsrv", r]
            pr = pr (pr == "" ? "" : ", ") sprintf("%.2f", y)
        }
        unit = m == "cpu" ? " us" : m == "mem" ? " KiB" : " req/s"
        verdict = x >= want ? "met" : sprintf("MISSED by %.0f%%", (1 - x / want) * 100)
        printf "| %s | %s | %.2f (httpsrv %.2f%s, nginx %.2f%s) | %s | %s |\n", w, desc, x, a, unit, b, unit, pr, verdict
    }
}' "$WORK/rounds.tsv"

echo
echo "Raw rounds (workload, server, round, requests, seconds, CPU ticks at ${CLK_TCK} Hz, errors, kernel ticks, client CPU ms):"
echo
echo '```'
cat "$WORK/rounds.tsv"
echo '```'
