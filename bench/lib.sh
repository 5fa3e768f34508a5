# bench/lib.sh - shell functions shared by bench/run.sh and bench/profile.sh.
# shellcheck shell=bash
# Sourced, not run. Expects: BENCH (this directory), ROOT (the repository), WORK (a temp
# directory this run owns), THREADS (server threads / nginx workers), SERVER_CPUS.

# Every process started through start_* is recorded here and killed by cleanup.
STARTED_PIDS=()

# bench_args "$@": the scripts' arguments. --quick sets QUICK=1; --help prints the script's
# header comment (up to `set -euo`) and exits.
QUICK=0
bench_args() {
    local arg
    for arg in "$@"; do
        case $arg in
        --quick) QUICK=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument: $arg (try --help)" ;;
        esac
    done
}

# start_watchdog SECONDS: bounds the whole run; past SECONDS the script gets SIGTERM (and its
# cleanup runs). The watchdog is killed by cleanup.
start_watchdog() {
    local limit=$1
    (
        trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
        sleep "$limit" &
        sleeper=$!
        wait "$sleeper"
        log "$(basename "$0"): time limit of ${limit}s reached, stopping"
        kill -TERM $$
    ) 2>/dev/null &
    STARTED_PIDS+=("$!")
}

# The CPU time of this shell's finished children, written by the `times` builtin (no
# subshell, so it sees this shell's children): around a wrk run, the difference is wrk's.
children_times() {
    times >"$1"
}

# Milliseconds of children CPU (user + sys) in a file written by children_times.
children_ms() {
    awk 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60000 + p[2] * 1000 }
        printf "%d\n", t
    }' "$1"
}


log() { printf '%s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Installs what the benchmark needs from Debian's packages, and the packages given as
# arguments; apt-get update once, and only when something is missing.
install_deps() {
    local need=() pkg
    for pkg in nginx libnginx-mod-http-lua libmicrohttpd-dev wrk gcc pkg-config curl \
        iproute2 valgrind strace gzip libssl-dev "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            need+=("$pkg")
    done
    if ((${#need[@]} > 0)); then
        log "installing: ${need[*]}"
        local sudo=()
        [[ $(id -u) -eq 0 ]] || sudo=(sudo)
        timeout 600 "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive timeout 900 "${sudo[@]}" apt-get install -y -qq \
            --no-install-recommends "${need[@]}" >&2
    fi
    command -v cargo >/dev/null || die "cargo not found (install Rust with rustup)"
}

CFLAGS_BENCH=(-O2 -g -Wall -Wextra -Werror)

# The directory cargo builds the tree at $ROOT into: CARGO_TARGET_DIR (relative to $ROOT,
# where cargo runs) when it is set, else $ROOT/target.
cargo_target_dir() {
    local dir=${CARGO_TARGET_DIR:-target}
    [[ $dir == /* ]] || dir=$ROOT/$dir
    echo "$dir"
}

# Builds the library and host (cargo, unless NO_BUILD=1) and every C piece into $WORK/bin,
# and writes the corpus into $WORK/corpus. httpsrvd is copied, so that a rebuild by someone
# else during the run cannot swap the binary under it.
build_all() {
    mkdir -p "$WORK/bin" "$WORK/corpus"
    if [[ ${NO_BUILD:-0} != 1 ]]; then
        log "cargo build --release"
        (cd "$ROOT" && timeout 1200 cargo build --release --quiet) || die "cargo build failed"
    fi
    local target
    target=$(cargo_target_dir)
    [[ -x $target/release/httpsrvd ]] || die "no $target/release/httpsrvd"
    cp "$target/release/httpsrvd" "$WORK/bin/httpsrvd"
    local b="$WORK/bin"
    gcc "${CFLAGS_BENCH[@]}" -o "$b/corpus" "$BENCH/corpus.c"
    gcc -std=c11 "${CFLAGS_BENCH[@]}" -fPIC -shared -pthread -I"$ROOT/include" \
        -o "$b/bench_module.so" "$BENCH/bench_module.c"
    # shellcheck disable=SC2046
    gcc "${CFLAGS_BENCH[@]}" -pthread -o "$b/mhd_server" "$BENCH/mhd_server.c" \
        $(pkg-config --cflags --libs libmicrohttpd)
    gcc "${CFLAGS_BENCH[@]}" -pthread -o "$b/floor" "$BENCH/floor.c"
    gcc "${CFLAGS_BENCH[@]}" -o "$b/idle_conns" "$BENCH/idle_conns.c" -lssl -lcrypto
    gcc "${CFLAGS_BENCH[@]}" -o "$b/flush_latency" "$BENCH/flush_latency.c"
    gcc "${CFLAGS_BENCH[@]}" -o "$b/hostile" "$BENCH/hostile.c"
    "$b/corpus" "$WORK/corpus"
    chmod 755 "$WORK" "$WORK/corpus"
}

# BEFORE=<git revision> (run.sh, profile.sh): the httpsrvd of that revision, to compare the
# current tree with. build_before REV checks REV out in a temporary git worktree under $WORK
# (removed as soon as the binary is copied, and by cleanup if the run stops sooner), runs
# `cargo build --release` there with CARGO_TARGET_DIR=BEFORE_TARGET_DIR, and copies the
# binary to $WORK/bin/httpsrvd-before. BEFORE_TARGET_DIR defaults to /work/target-before when
# /work is writable (else target/before in the current tree's target directory); it is kept,
# so the next run rebuilds only httpsrv itself, not its dependencies. The module and corpus
# stay those build_all made from the current tree (bench_module.c, include/httpsrv.h): only
# the server differs. Sets BEFORE_SHA.
BEFORE_WT=
BEFORE_SHA=
build_before() {
    local rev=$1 target
    BEFORE_SHA=$(git -C "$ROOT" rev-parse --verify --quiet "$rev^{commit}") ||
        die "BEFORE=$rev is not a commit in $ROOT"
    target=${BEFORE_TARGET_DIR:-}
    if [[ -z $target ]]; then
        if [[ -d /work && -w /work ]]; then
            target=/work/target-before
        else
            target=$(cargo_target_dir)/before
        fi
    fi
    [[ $target == /* ]] || target=$PWD/$target
    mkdir -p "$target" "$WORK/bin"
    BEFORE_WT=$WORK/before-src
    log "BEFORE=$rev ($BEFORE_SHA): cargo build --release in a worktree at $BEFORE_WT, target $target"
    timeout 120 git -C "$ROOT" worktree add --quiet --detach "$BEFORE_WT" "$BEFORE_SHA" >&2 ||
        die "git worktree add $BEFORE_WT $BEFORE_SHA failed"
    # a stale binary of another revision must not pass for this one
    rm -f "$target/release/httpsrvd"
    (cd "$BEFORE_WT" && CARGO_TARGET_DIR=$target timeout 1200 cargo build --release --quiet) ||
        die "cargo build of BEFORE=$rev failed"
    [[ -x $target/release/httpsrvd ]] || die "no $target/release/httpsrvd after building BEFORE=$rev"
    cp "$target/release/httpsrvd" "$WORK/bin/httpsrvd-before"
    remove_before_worktree
}

remove_before_worktree() {
    [[ -n $BEFORE_WT ]] || return 0
    # remove deletes the directory and git's record of it; if it cannot (git worktree add
    # stopped halfway), delete the directory and let prune drop the record
    if ! git -C "$ROOT" worktree remove --force "$BEFORE_WT" 2>/dev/null; then
        rm -rf "$BEFORE_WT"
        git -C "$ROOT" worktree prune 2>/dev/null || true
    fi
    BEFORE_WT=
}

# A TCP port on 127.0.0.1 that nothing listens on now (for nginx, which cannot bind port 0
# and report it). Below the ephemeral range, so wrk's own connections never take it.
free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 12000))
        if [[ -z $(ss -Htln "( sport = :$p )" 2>/dev/null) ]]; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

# Waits (bounded) until a line matching "listening on http://127.0.0.1:PORT/" (or https://)
# is in FILE; prints PORT.
wait_port() {
    local file=$1 pid=$2 i port
    for ((i = 0; i < 100; i++)); do
        port=$(grep -o 'https\{0,1\}://127\.0\.0\.1:[0-9]*/' "$file" 2>/dev/null | head -1 | grep -o '[0-9]*/$' | tr -d /) || true
        if [[ -n $port ]]; then
            echo "$port"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; die "server $pid exited"; }
        sleep 0.1
    done
    cat "$file" >&2
    die "server $pid did not report its port"
}

# Waits (bounded) until 127.0.0.1:PORT accepts connections (SCHEME http or https, unchecked).
wait_listen() {
    local port=$1 scheme=${2:-http} i
    for ((i = 0; i < 100; i++)); do
        curl -sk -o /dev/null --max-time 1 "$scheme://127.0.0.1:$port/" && return 0
        sleep 0.1
    done
    die "nothing answers on port $port"
}

# start_<server> TAG: starts it pinned to SERVER_CPUS; sets SRV_PID (the process whose CPU
# time counts: for nginx, the master, whose workers measure_pids lists) and SRV_PORT.
# start_httpsrv and start_before take extra words to put before the command (e.g. valgrind).
start_httpsrv() {
    start_httpsrvd httpsrv "$WORK/bin/httpsrvd" "$@"
}

# The BEFORE build (build_before), started exactly as httpsrv: same module, options and CPUs.
start_before() {
    [[ -x $WORK/bin/httpsrvd-before ]] || die "the server 'before' needs BEFORE=<git revision>"
    start_httpsrvd before "$WORK/bin/httpsrvd-before" "$@"
}

# How httpsrvd listens: bench/tls.sh sets a --tls listener and its options instead.
HTTPSRVD_LISTEN=(--listen 127.0.0.1:0)

# start_httpsrvd NAME BINARY TAG [WRAPPER...]
start_httpsrvd() {
    local bin=$2 out="$WORK/$1.$3.log" wrapper=()
    shift 3
    wrapper=("$@")
    taskset -c "$SERVER_CPUS" "${wrapper[@]}" "$bin" "${HTTPSRVD_LISTEN[@]}" \
        --module "$WORK/bin/bench_module.so=$WORK/corpus" \
        --set "threads=$THREADS" --set keepalive_requests=100000000 \
        --set max_connections=20000 --grace-ms 200 >"$out" 2>&1 &
    SRV_PID=$!
    STARTED_PIDS+=("$SRV_PID")
    SRV_PORT=$(wait_port "$out" "$SRV_PID")
}

start_mhd() {
    local out="$WORK/mhd.$1.log"
    taskset -c "$SERVER_CPUS" "$WORK/bin/mhd_server" "$WORK/corpus" "$THREADS" >"$out" 2>&1 &
    SRV_PID=$!
    STARTED_PIDS+=("$SRV_PID")
    SRV_PORT=$(wait_port "$out" "$SRV_PID")
}

start_floor() {
    local out="$WORK/floor.$1.log"
    taskset -c "$SERVER_CPUS" "$WORK/bin/floor" "$WORK/corpus" "$THREADS" >"$out" 2>&1 &
    SRV_PID=$!
    STARTED_PIDS+=("$SRV_PID")
    SRV_PORT=$(wait_port "$out" "$SRV_PID")
}

# With NGINX_TLS="CERT KEY" (bench/tls.sh), nginx listens with ssl on that certificate, with
# TLS 1.2 and 1.3 (as httpsrv's default), the TLS 1.3 suite TLS13_SUITE and the group
# TLS_GROUP only, and no session cache and no tickets (as httpsrv with
# tls_session_resumption=off).
NGINX_TLS=
TLS13_SUITE=${TLS13_SUITE:-TLS_AES_128_GCM_SHA256}
TLS_GROUP=${TLS_GROUP:-X25519}

# nginx 1.22 + lua: the same bodies as bench_module.c, read from the same corpus files at
# init (in the master, before the workers fork).
write_nginx_conf() {
    local dir=$1 port=$2 listen="listen 127.0.0.1:$2;" ssl=""
    if [[ -n $NGINX_TLS ]]; then
        local cert key
        read -r cert key <<<"$NGINX_TLS"
        listen="listen 127.0.0.1:$port ssl;"
        ssl="ssl_certificate $cert;
        ssl_certificate_key $key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_conf_command Ciphersuites $TLS13_SUITE;
        ssl_ecdh_curve $TLS_GROUP;
        ssl_session_cache off;
        ssl_session_tickets off;"
    fi
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
# generated by bench/lib.sh
daemon off;
master_process on;
worker_processes $THREADS;
worker_rlimit_nofile 20000;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;

events {
    worker_connections 12000;
    use epoll;
}

http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    lua_code_cache on;

    gzip off;
    gzip_comp_level 1;
    gzip_min_length 256;
    gzip_vary on;

    init_by_lua_block {
        local function slurp(name)
            local f = assert(io.open("$WORK/corpus/" .. name, "rb"))
            local s = f:read("*a")
            f:close()
            return s
        end
        local text = slurp("text.txt")
        local b = { text = text, text10k = text:sub(1, 10240), big = slurp("big.bin"), pieces = {} }
        for i = 1, 20 do
            b.pieces[i] = text:sub((i - 1) * 1024 + 1, i * 1024)
        end
        package.loaded.bench = b
    }

    server {
        $listen
        $ssl

        # /X/pool: bench_module.c's routes of that name run on a pool thread; nginx has no
        # pool threads, the same handlers serve them (bench/hostile.sh).
        location ~ ^/hello(/pool)?$ {
            default_type text/plain;
            content_by_lua_block { ngx.print("Hello, world!") }
        }
        location = /chunks {
            default_type text/plain;
            content_by_lua_block {
                local p = require("bench").pieces
                for i = 1, 16 do
                    ngx.print(p[i])
                    ngx.flush()
                end
            }
        }
        location ~ ^/gzip10k(/pool)?$ {
            default_type text/html;
            gzip on;
            content_by_lua_block { ngx.print(require("bench").text10k) }
        }
        location ~ ^/gzipstream(/pool)?$ {
            default_type text/html;
            gzip on;
            content_by_lua_block {
                local p = require("bench").pieces
                for i = 1, 20 do
                    ngx.print(p[i])
                    ngx.flush()
                end
            }
        }
        location = /big {
            default_type application/octet-stream;
            content_by_lua_block { ngx.print(require("bench").big) }
        }
        # bench/hostile.sh: as bench_module.c's POST /upload ("<length> <CRC-32>"). A body over
        # client_body_buffer_size (16k) is in a temp file; the full collection after each
        # request keeps the 1 MiB strings read from it from piling up in the lua heap.
        location = /upload {
            client_max_body_size 2m;
            default_type text/plain;
            content_by_lua_block {
                ngx.req.read_body()
                local data = ngx.req.get_body_data()
                if not data then
                    local name = ngx.req.get_body_file()
                    if name then
                        local f = assert(io.open(name, "rb"))
                        data = f:read("*a")
                        f:close()
                    end
                end
                data = data or ""
                local answer = #data .. " " .. string.format("%.0f", ngx.crc32_long(data)) .. "\n"
                ngx.header.content_length = #answer
                ngx.print(answer)
                data = nil
                collectgarbage("collect")
            }
        }
        location = /gzipbig/pool {
            default_type text/html;
            gzip on;
            content_by_lua_block {
                local text = require("bench").text
                local sent, flushed = 0, 0
                while sent < 262144 do
                    local n = math.min(262144 - sent, #text)
                    ngx.print(text:sub(1, n))
                    sent = sent + n
                    if sent - flushed >= 65536 then
                        ngx.flush()
                        flushed = sent
                    end
                end
            }
        }
    }
}
EOF
}

start_nginx() {
    local dir="$WORK/nginx.$1"
    mkdir -p "$dir"
    SRV_PORT=$(free_port)
    write_nginx_conf "$dir" "$SRV_PORT"
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" ||
        die "nginx config rejected (see $dir/error.log)"
    taskset -c "$SERVER_CPUS" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
        >"$dir/stdout.log" 2>&1 &
    SRV_PID=$!
    STARTED_PIDS+=("$SRV_PID")
    wait_listen "$SRV_PORT" "$([[ -n $NGINX_TLS ]] && echo https || echo http)"
    local i
    for ((i = 0; i < 50; i++)); do
        [[ $(measure_pids nginx "$SRV_PID" | wc -w) -ge $THREADS ]] && return 0
        sleep 0.1
    done
    die "nginx workers did not start"
}

# The PIDs whose CPU time and memory count: nginx's workers (the master only accepts
# signals), the process itself for the others (its /proc/PID/stat sums all its threads).
measure_pids() {
    local kind=$1 pid=$2
    if [[ $kind == nginx ]]; then
        pgrep -P "$pid" | tr '\n' ' '
    else
        echo "$pid"
    fi
}

# "utime stime" in clock ticks, each summed over the PIDs given.
cpu_ticks() {
    local user=0 kernel=0 pid rest u k
    for pid in "$@"; do
        rest=$(sed 's/^.*) //' "/proc/$pid/stat") || die "process $pid is gone"
        # after "pid (comm) ": state is field 1, utime 12, stime 13
        read -r u k < <(awk '{print $12, $13}' <<<"$rest")
        user=$((user + u)) kernel=$((kernel + k))
    done
    echo "$user $kernel"
}

# VmRSS in KiB, summed over the PIDs given.
rss_kib() {
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")))
    done
    echo "$total"
}

# start_server SERVER TAG: start_SERVER, its PID and port kept in PIDS and PORTS.
declare -A PIDS PORTS
start_server() {
    local s=$1 tag=$2
    "start_$s" "$tag"
    PIDS[$s]=$SRV_PID
    PORTS[$s]=$SRV_PORT
}
stop_server() {
    stop_pid "${PIDS[$1]}"
}

# idle_one SERVER TRY ROUND [tls SUITE GROUP]: one idle measurement on a fresh server: one
# request, then IDLE_CONNS connections from bench/idle_conns.c (on CLIENT_CPUS), each with one
# request, held idle; VmRSS before and after. With tls, the connections speak TLS (the server
# must listen with TLS). Appends "server connections before after open round" to
# $WORK/idle.tsv; returns non-zero when the client could not get its connections answered.
idle_one() {
    local s=$1 try=$2 round=$3 pids before after out client open i scheme=http
    shift 3
    [[ ${1:-} == tls ]] && scheme=https
    start_server "$s" "idle$round.$try"
    pids=$(measure_pids "$s" "${PIDS[$s]}")
    # one request first, so that lazily built state (lua VM, buffers) is in "before"
    curl -sk --max-time 5 -o /dev/null "$scheme://127.0.0.1:${PORTS[$s]}/hello"
    sleep 0.5
    # shellcheck disable=SC2086
    before=$(rss_kib $pids)
    out="$WORK/idle.$s.$round.$try.txt"
    taskset -c "$CLIENT_CPUS" timeout 100 "$WORK/bin/idle_conns" "${PORTS[$s]}" "$IDLE_CONNS" 4 \
        /hello "$@" >"$out" 2>&1 &
    client=$!
    STARTED_PIDS+=("$client")
    for ((i = 0; i < 900; i++)); do
        grep -qs '^ready\|^failed' "$out" && break
        sleep 0.1
    done
    if ! grep -qs '^ready' "$out"; then
        log "  $s: idle connections failed: $(cat "$out")"
        wait "$client" 2>/dev/null || true
        stop_server "$s"
        return 1
    fi
    sleep 1
    # shellcheck disable=SC2086
    after=$(rss_kib $pids)
    wait "$client" || die "$s: idle client failed: $(cat "$out")"
    open=$(awk '/^open/ {print $2}' "$out")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$IDLE_CONNS" "$before" "$after" "$open" "$round" >>"$WORK/idle.tsv"
    log "  $s: RSS $before KiB -> $after KiB with $IDLE_CONNS $scheme connections ($open still open at the end)"
    stop_server "$s"
}

stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        stop_pid "$pid"
    done
    STARTED_PIDS=()
    remove_before_worktree
    if [[ ${KEEP:-0} == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}

machine_facts() {
    echo "- nproc: $(nproc)"
    echo "- CPU: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "- memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "- kernel: $(uname -sr)"
    echo "- OS: $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "- nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), lua module $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null)"
    echo "- libmicrohttpd: $(pkg-config --modversion libmicrohttpd)"
    echo "- wrk: $(dpkg-query -W -f='${Version}' wrk 2>/dev/null)"
    echo "- rustc: $(rustc --version)"
    echo "- gcc: $(gcc -dumpfullversion)"
    echo "- httpsrv: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' + uncommitted changes')"
    if [[ -n ${BEFORE_SHA:-} ]]; then
        echo "- before: BEFORE=$BEFORE, $(git -C "$ROOT" rev-parse --short "$BEFORE_SHA") ($(git -C "$ROOT" log -1 --format=%s "$BEFORE_SHA" | cut -c1-72))"
    fi
}

# Percent of all CPUs busy over one second, from /proc/stat: taken while nothing of ours
# runs, it shows how much the machine's other users were taking.
cpu_busy_pct() {
    local a b
    a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%.0f%%", (d > 0 ? 100 * (y[1] - x[1]) / d : 0)}'
}
