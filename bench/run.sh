#!/usr/bin/env bash
# Loopback benchmark: hyco's two paths, connect (visitor -> connect -> serve -> listen ->
# target) and public port (visitor -> serve -> listen -> target, bore's and rathole's
# topology), against direct TCP, bore, rathole, frp and chisel, all measured in the same run;
# UDP through hyco's public port and through `hyco connect --bind udp:` (the hybrid-connection
# path) against rathole's UDP forwarding; a Unix-socket forward's CPU per GB against a TCP
# one's (bench/unix_cpu.sh). Not part of `cargo test`;
# see README "Benchmark".
#
#   bash bench/run.sh            # ~9 minutes (installing the peers first: ~18 more); writes bench/RESULTS.md
#   BENCH_HYCO_BASE=/path/to/previous/hyco bash bench/run.sh   # ~12 minutes: adds "hyco base"
#   bash bench/run.sh http       # ~2 minutes: only HTTP mode against frp (bench/http.sh); writes bench/RESULTS-http.md
#
# Knobs (environment): BENCH_SECS (iperf3 seconds per run, 5), BENCH_ROUNDS (throughput
# rounds, tools interleaved, median kept, 3), BENCH_LATENCY_N (connections, 1000),
# BENCH_IDLE_N (idle tunnels for RSS, 5000), BENCH_MAX_N (hyco's concurrent tunnels,
# 9000), BENCH_UDP_RATES (iperf3 -u offered rates, one run per rate and tool per round,
# "200M 1G": one the peers carry, one beyond), BENCH_UDP_LEN (datagram bytes, 1200),
# BENCH_PORT_BASE (first of the ports used, 24100; hyco's public ports must lie in the relay's
# range, 20000-29999), BENCH_PEERS (where the peers are installed, bench/.peers), BENCH_HYCO
# (the hyco binary measured as "hyco"; default: this tree's release build), BENCH_HYCO_BASE (a
# second hyco binary, e.g. the previous build, measured as "hyco base" in the same interleaved
# rounds with its own serve, listen and connect, and its public path when its `listen` has
# --public, plus "hyco / hyco base" ratio columns; unset: no such columns).
# Peers: bore-cli and rathole from crates.io (cargo), frp and chisel at the versions pinned
# below from the Go module proxy (go 1.25 or later). bore's control port is its fixed 7835.
# HTTP mode is measured with wrk (Debian's).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
ONLY=${1:-all}
[[ $ONLY == all || $ONLY == http ]] || { echo "usage: bash bench/run.sh [http]" >&2; exit 2; }
PEERS=${BENCH_PEERS:-$ROOT/bench/.peers}
SECS=${BENCH_SECS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
LAT_N=${BENCH_LATENCY_N:-1000}
IDLE_N=${BENCH_IDLE_N:-5000}
MAX_N=${BENCH_MAX_N:-9000}
read -r -a UDP_RATES <<<"${BENCH_UDP_RATES:-200M 1G}"
UDP_LEN=${BENCH_UDP_LEN:-1200}
BASE=${BENCH_PORT_BASE:-24100}
export DEBIAN_FRONTEND=noninteractive

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
say "tools"
missing=()
command -v iperf3 >/dev/null || missing+=(iperf3)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
command -v ss >/dev/null || missing+=(iproute2)
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ $ONLY == all ]]; then
  [[ -x $PEERS/bin/bore ]] || cargo install --quiet --locked --root "$PEERS" bore-cli
  # rathole's default features include the WebSocket transport. Its lock file pins a `time`
  # that today's rustc rejects, so it resolves fresh versions.
  [[ -x $PEERS/bin/rathole ]] || cargo install --quiet --root "$PEERS" rathole
fi
FRP_VERSION=v0.68.1 CHISEL_VERSION=v1.11.3
go_install() { # module version flags package...: builds the packages into $PEERS/bin
  # Like `go install module/package@version`, but from inside the downloaded module: that
  # form also reads the module's version list (for deprecation notices), which some proxies
  # refuse, and building from the module lets frp take its `noweb` tag.
  local mod=$1 version=$2 flags=$3 dir
  shift 3
  command -v go >/dev/null || die "needs go (1.25 or later) to install $mod"
  dir=$(go mod download -json "$mod@$version" | jq -r .Dir)
  # shellcheck disable=SC2086 # flags are words
  (cd "$dir" && GOBIN="$PEERS/bin" GOFLAGS=-buildvcs=false go install -trimpath $flags "$@")
}
# frp's web dashboards (off by default) embed files the module does not ship: `noweb`.
[[ -x $PEERS/bin/frps && -x $PEERS/bin/frpc ]] ||
  go_install github.com/fatedier/frp "$FRP_VERSION" "-tags noweb" ./cmd/frps ./cmd/frpc
[[ $ONLY == http || -x $PEERS/bin/chisel ]] || go_install github.com/jpillora/chisel "$CHISEL_VERSION" \
  "-ldflags=-X=github.com/jpillora/chisel/share.BuildVersion=${CHISEL_VERSION#v}" .
cargo build --quiet --release --bin hyco --example probe
HYCO=${BENCH_HYCO:-$ROOT/target/release/hyco}
HYCO_BASE=${BENCH_HYCO_BASE:-}
[[ -z $HYCO_BASE || -x $HYCO_BASE ]] || die "BENCH_HYCO_BASE: $HYCO_BASE is not an executable"
PROBE=$ROOT/target/release/examples/probe
BORE=$PEERS/bin/bore
RATHOLE=$PEERS/bin/rathole
FRPS=$PEERS/bin/frps FRPC=$PEERS/bin/frpc
CHISEL=$PEERS/bin/chisel

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= 20000)) || die "needs 20000 open files (ulimit -n), have $(ulimit -n)"

WORK=$(mktemp -d /tmp/hyco-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
spawn() { # name command...: runs in the background, logs to $WORK/name.log, sets LAST
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  LAST=$!
  PIDS+=("$LAST")
}
listening() { ss -Hltn "( sport = :$1 )" | grep -q .; }
wait_listening() {
  for _ in $(seq 200); do listening "$1" && return 0; sleep 0.05; done
  die "nothing listens on port $1"
}
wait_udp() {
  for _ in $(seq 200); do ss -Hlun "( sport = :$1 )" | grep -q . && return 0; sleep 0.05; done
  die "nothing listens on UDP port $1"
}
wait_tunnel() { # port: until an echo round trip through it works
  for _ in $(seq 100); do "$PROBE" latency "127.0.0.1:$1" 1 >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "no echo through port $1"
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
alive() { kill -0 "$1" 2>/dev/null; }
CLK_TCK=$(getconf CLK_TCK)

# shellcheck source=bench/relay.sh
source "$ROOT/bench/relay.sh"
# shellcheck source=bench/http.sh
source "$ROOT/bench/http.sh"
if [[ $ONLY == http ]]; then
  {
    echo "# hyco benchmark results: HTTP mode"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), Linux $(uname -r), loopback."
    echo "hyco $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+changes') (\`bash bench/run.sh http\`)."
    echo
    http_bench
  } >"$WORK/results-http.md"
  cat "$WORK/results-http.md"
  cp "$WORK/results-http.md" "$ROOT/bench/RESULTS-http.md"
  say "written to bench/RESULTS-http.md; logs in $WORK"
  exit 0
fi

# ---------------------------------------------------------------- targets and tunnels
IPERF=$BASE ECHO=$((BASE + 1))
say "targets: iperf3 on $IPERF, echo on $ECHO; work dir $WORK"
spawn iperf3 iperf3 -s -B 127.0.0.1 -p "$IPERF"
spawn echo "$PROBE" echo "127.0.0.1:$ECHO" 7200
wait_listening "$IPERF"
wait_listening "$ECHO"

PEER_TOOLS=(bore rathole-tcp rathole-ws frp chisel)
UDP_PEERS=(rathole-tcp rathole-ws)
has_public() { "$1" listen --help 2>/dev/null | grep -q -- '--public'; }
has_udp_bind() { "$1" connect --help 2>/dev/null | grep -q -- 'udp:'; }
HYCOS=(hyco) PUBLICS=() HC_UDPS=() NOTES=()
if has_public "$HYCO"; then PUBLICS+=(hyco-public); else NOTES+=("hyco's listen has no --public: its public path is not measured."); fi
if has_udp_bind "$HYCO"; then HC_UDPS+=(hyco-udp); else NOTES+=("hyco's connect has no --bind udp: its UDP connect path is not measured."); fi
if [[ -n $HYCO_BASE ]]; then
  HYCOS+=(hyco-base)
  if has_public "$HYCO_BASE"; then PUBLICS+=(hyco-base-public); else NOTES+=("hyco base's listen has no --public: its public path is not measured."); fi
fi
TOOLS=(direct "${PEER_TOOLS[@]}" "${HYCOS[@]}" "${PUBLICS[@]}")
UDP_TOOLS=("${UDP_PEERS[@]}" "${PUBLICS[@]}" "${HC_UDPS[@]}")
declare -A LABEL=([direct]=direct [bore]=bore [rathole-tcp]="rathole tcp" [rathole-ws]="rathole ws"
  [frp]=frp [chisel]=chisel [hyco]=hyco [hyco-base]="hyco base" [hyco-public]="hyco public"
  [hyco-base-public]="hyco base public" [hyco-udp]="hyco connect udp")
declare -A IPORT EPORT UPORT SERVER CLIENTS LISTEN CONNECT
IPORT[direct]=$IPERF EPORT[direct]=$ECHO

say "bore"
spawn bore-server "$BORE" server --bind-addr 127.0.0.1 --min-port $((BASE + 10)) --max-port $((BASE + 19))
SERVER[bore]=$LAST
wait_listening 7835
spawn bore-iperf "$BORE" local "$IPERF" --local-host 127.0.0.1 --to 127.0.0.1 --port $((BASE + 10))
CLIENTS[bore]=$LAST
spawn bore-echo "$BORE" local "$ECHO" --local-host 127.0.0.1 --to 127.0.0.1 --port $((BASE + 11))
CLIENTS[bore]+=" $LAST"
IPORT[bore]=$((BASE + 10)) EPORT[bore]=$((BASE + 11))

rathole() { # name control-port transport
  local name=$1 port=$2 transport=$3 ws=""
  [[ $transport == websocket ]] && ws=$'[X.transport]\ntype = "websocket"\n[X.transport.websocket]\ntls = false\n'
  cat >"$WORK/$name-server.toml" <<EOF
[server]
bind_addr = "127.0.0.1:$port"
default_token = "bench"
${ws//X/server}
[server.services.iperf]
bind_addr = "127.0.0.1:$((port + 1))"
[server.services.iperf-udp]
type = "udp"
bind_addr = "127.0.0.1:$((port + 1))"
[server.services.echo]
bind_addr = "127.0.0.1:$((port + 2))"
EOF
  cat >"$WORK/$name-client.toml" <<EOF
[client]
remote_addr = "127.0.0.1:$port"
default_token = "bench"
${ws//X/client}
[client.services.iperf]
local_addr = "127.0.0.1:$IPERF"
[client.services.iperf-udp]
type = "udp"
local_addr = "127.0.0.1:$IPERF"
[client.services.echo]
local_addr = "127.0.0.1:$ECHO"
EOF
  spawn "$name-server" "$RATHOLE" --server "$WORK/$name-server.toml"
  SERVER[$name]=$LAST
  wait_listening "$port"
  spawn "$name-client" "$RATHOLE" --client "$WORK/$name-client.toml"
  CLIENTS[$name]=$LAST
  IPORT[$name]=$((port + 1)) EPORT[$name]=$((port + 2)) UPORT[$name]=$((port + 1))
}
# iperf3 -u keeps its control connection on TCP: the iperf service is on both protocols,
# one port number.
say "rathole (TCP and WebSocket transports; TCP and UDP services)"
rathole rathole-tcp $((BASE + 20)) tcp
rathole rathole-ws $((BASE + 30)) websocket

say "frp"
# TCP control connection with frp's default multiplexing (tcpMux); its pool of prewarmed
# work connections (transport.poolCount) is 0, off, by default.
cat >"$WORK/frps.toml" <<EOF
bindAddr = "127.0.0.1"
bindPort = $((BASE + 60))
auth.token = "bench"
EOF
cat >"$WORK/frpc.toml" <<EOF
serverAddr = "127.0.0.1"
serverPort = $((BASE + 60))
auth.token = "bench"

[[proxies]]
name = "iperf"
type = "tcp"
localIP = "127.0.0.1"
localPort = $IPERF
remotePort = $((BASE + 61))

[[proxies]]
name = "echo"
type = "tcp"
localIP = "127.0.0.1"
localPort = $ECHO
remotePort = $((BASE + 62))
EOF
spawn frps "$FRPS" -c "$WORK/frps.toml"
SERVER[frp]=$LAST
wait_listening $((BASE + 60))
spawn frpc "$FRPC" -c "$WORK/frpc.toml"
CLIENTS[frp]=$LAST
IPORT[frp]=$((BASE + 61)) EPORT[frp]=$((BASE + 62))

say "chisel"
# SSH over WebSocket over plain HTTP; reverse remotes open the listening ports on the server.
spawn chisel-server "$CHISEL" server --host 127.0.0.1 --port $((BASE + 70)) --reverse
SERVER[chisel]=$LAST
wait_listening $((BASE + 70))
spawn chisel-client "$CHISEL" client "http://127.0.0.1:$((BASE + 70))" \
  "R:127.0.0.1:$((BASE + 71)):127.0.0.1:$IPERF" "R:127.0.0.1:$((BASE + 72)):127.0.0.1:$ECHO"
CLIENTS[chisel]=$LAST
IPORT[chisel]=$((BASE + 71)) EPORT[chisel]=$((BASE + 72))

bench_relay_config "$WORK/relay.toml" $'[[hybrid_connections]]\nname = "bench"' \
  $'[limits]\nmax_connections = 19500\nmax_pending_senders_per_hc = 10000'
# The public path's relay: the same, and the bench rule may ask for ports (20000-29999).
cp "$WORK/relay.toml" "$WORK/relay-public.toml"
printf '\n[public_ports]\nrules = ["bench"]\n' >>"$WORK/relay-public.toml"
hyco_serve() { # name binary relay-port config: a relay of its own; sets HENV and HCRED for its clients
  local t=$1 bin=$2 port=$3 config=$4
  HENV=(env HOME="$WORK/$t" XDG_CONFIG_HOME="$WORK/$t/config" HYCO_DATA_DIR="$WORK/$t/data")
  HCRED=(--endpoint "ws://127.0.0.1:$port" --key-name bench --key "$BENCH_KEY")
  mkdir -p "$WORK/$t"
  spawn "$t-serve" "${HENV[@]}" "$bin" serve --bind "127.0.0.1:$port" --config "$config"
  SERVER[$t]=$LAST
  wait_listening "$port"
}
hyco_tunnels() { # name binary relay-port: serve, listen and two connects, as the other tools' tunnels
  local t=$1 bin=$2 port=$3
  hyco_serve "$t" "$bin" "$port" "$WORK/relay.toml"
  local udp=()
  [[ $t == hyco && ${#HC_UDPS[@]} -gt 0 ]] && udp=(--to "iperf-udp=udp://127.0.0.1:$IPERF")
  spawn "$t-listen" "${HENV[@]}" "$bin" listen bench --to "iperf=127.0.0.1:$IPERF" --to "echo=127.0.0.1:$ECHO" \
    "${udp[@]}" "${HCRED[@]}"
  LISTEN[$t]=$LAST
  spawn "$t-connect-iperf" "${HENV[@]}" "$bin" connect bench/iperf --bind "127.0.0.1:$((port + 1))" "${HCRED[@]}"
  CLIENTS[$t]="${LISTEN[$t]} $LAST"
  spawn "$t-connect-echo" "${HENV[@]}" "$bin" connect bench/echo --bind "127.0.0.1:$((port + 2))" "${HCRED[@]}"
  CONNECT[$t]=$LAST
  CLIENTS[$t]+=" $LAST"
  IPORT[$t]=$((port + 1)) EPORT[$t]=$((port + 2))
  if ((${#udp[@]})); then
    # The hybrid-connection UDP path, through this relay and listener: iperf3 -u keeps its
    # control connection on TCP, so a TCP connect and a UDP connect share one port number.
    spawn hyco-udp-connect-tcp "${HENV[@]}" "$bin" connect bench/iperf --bind "127.0.0.1:$((port + 3))" "${HCRED[@]}"
    CLIENTS[hyco-udp]="${LISTEN[$t]} $LAST"
    spawn hyco-udp-connect "${HENV[@]}" "$bin" connect bench/iperf-udp --bind "udp:127.0.0.1:$((port + 3))" "${HCRED[@]}"
    CLIENTS[hyco-udp]+=" $LAST"
    SERVER[hyco-udp]=${SERVER[$t]} UPORT[hyco-udp]=$((port + 3))
  fi
}
hyco_public() { # name binary relay-port: serve and a listen asking for public ports, as bore's and rathole's tunnels
  local t=$1 bin=$2 port=$3
  hyco_serve "$t" "$bin" "$port" "$WORK/relay-public.toml"
  # iperf3 -u keeps its control connection on TCP: TCP and UDP on one port number.
  spawn "$t-listen" "${HENV[@]}" "$bin" listen bench --to "iperf=127.0.0.1:$IPERF" --to "echo=127.0.0.1:$ECHO" \
    --to "iperf-udp=udp://127.0.0.1:$IPERF" --public "iperf=$((port + 1))" --public "echo=$((port + 2))" \
    --public "iperf-udp=$((port + 1))" "${HCRED[@]}"
  LISTEN[$t]=$LAST
  CLIENTS[$t]=$LAST
  IPORT[$t]=$((port + 1)) EPORT[$t]=$((port + 2)) UPORT[$t]=$((port + 1))
}
say "hyco ($HYCO)"
hyco_tunnels hyco "$HYCO" $((BASE + 40))
if [[ -n $HYCO_BASE ]]; then
  say "hyco base ($HYCO_BASE)"
  hyco_tunnels hyco-base "$HYCO_BASE" $((BASE + 50))
fi
for t in "${PUBLICS[@]}"; do
  say "${LABEL[$t]}: public ports"
  if [[ $t == hyco-public ]]; then hyco_public "$t" "$HYCO" $((BASE + 80)); else hyco_public "$t" "$HYCO_BASE" $((BASE + 90)); fi
done
for n in "${NOTES[@]}"; do say "$n"; done

for t in "${TOOLS[@]}"; do
  wait_listening "${IPORT[$t]}"
  wait_tunnel "${EPORT[$t]}"
done
for t in "${UDP_TOOLS[@]}"; do wait_udp "${UPORT[$t]}"; done

# ---------------------------------------------------------------- throughput and CPU
declare -A R          # R[tool,metric]
declare -A SAMPLES    # space-separated MB/s per tool,test
declare -A BYTES TICKS TICKS_ALL
sum_ticks() { local s=0; for p in "$@"; do s=$((s + $(cpu_ticks "$p"))); done; echo "$s"; }
iperf_mbs() { # port args... -> "bytes MB/s"
  local port=$1
  shift
  iperf3 -c 127.0.0.1 -p "$port" -t "$SECS" -J "$@" >"$WORK/iperf.json" || die "iperf3 through port $port failed"
  jq -r '.end.sum_received | "\(.bytes) \(.bits_per_second / 8 / 1e6)"' "$WORK/iperf.json"
}
TESTS=(single reverse parallel)
declare -A TEST_ARGS=([single]="" [reverse]="-R" [parallel]="-P 8")
for round in $(seq "$ROUNDS"); do
  for t in "${TOOLS[@]}"; do
    say "throughput round $round/$ROUNDS: $t"
    # shellcheck disable=SC2206 # pid lists are words
    procs=(${SERVER[$t]:-} ${CLIENTS[$t]:-})
    before=$( ((${#procs[@]})) && cpu_ticks "${procs[0]}" || echo 0)
    before_all=$( ((${#procs[@]})) && sum_ticks "${procs[@]}" || echo 0)
    for test in "${TESTS[@]}"; do
      # shellcheck disable=SC2086 # arguments are words
      out=$(iperf_mbs "${IPORT[$t]}" ${TEST_ARGS[$test]})
      read -r bytes mbs <<<"$out"
      SAMPLES[$t,$test]+="$mbs "
      BYTES[$t]=$((${BYTES[$t]:-0} + bytes))
    done
    if ((${#procs[@]})); then
      TICKS[$t]=$((${TICKS[$t]:-0} + $(cpu_ticks "${procs[0]}") - before))
      TICKS_ALL[$t]=$((${TICKS_ALL[$t]:-0} + $(sum_ticks "${procs[@]}") - before_all))
    fi
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
for t in "${TOOLS[@]}"; do
  for test in "${TESTS[@]}"; do R[$t,$test]=$(echo "${SAMPLES[$t,$test]}" | median); done
  if [[ -n ${SERVER[$t]:-} ]]; then
    R[$t,cpu]=$(awk -v k="${TICKS[$t]}" -v b="${BYTES[$t]}" -v hz="$CLK_TCK" 'BEGIN {print k / hz / (b / 1e9)}')
    R[$t,cpuall]=$(awk -v k="${TICKS_ALL[$t]}" -v b="${BYTES[$t]}" -v hz="$CLK_TCK" 'BEGIN {print k / hz / (b / 1e9)}')
  fi
done

# ---------------------------------------------------------------- UDP
# iperf3 -u at each offered rate through the UDP ports: datagrams received per second and
# the share lost, as iperf3's server counts them.
declare -A UPPS ULOSS # space-separated samples per tool,rate
iperf_udp() { # port rate -> "received-packets/s lost-%"
  iperf3 -c 127.0.0.1 -p "$1" -u -b "$2" -l "$UDP_LEN" -t "$SECS" -J >"$WORK/iperf-udp.json" ||
    die "iperf3 -u through port $1 failed"
  jq -r '(.end.sum_received // .end.sum) | "\((.packets - .lost_packets) / .seconds) \(.lost_percent)"' "$WORK/iperf-udp.json"
}
# A tool that carries no datagram would leave iperf3 waiting ~30 s per run: one short run at
# a low rate first, and a tool that fails it is left out of the rounds, saying so.
UDP_OK=()
for t in "${UDP_TOOLS[@]}"; do
  if timeout 20 iperf3 -c 127.0.0.1 -p "${UPORT[$t]}" -u -b 1M -l "$UDP_LEN" -t 1 >"$WORK/udp-check-$t.log" 2>&1; then
    UDP_OK+=("$t")
  else
    NOTES+=("${LABEL[$t]}: iperf3 -u through its UDP port failed (see udp-check-$t.log): no UDP numbers.")
    say "${LABEL[$t]}: no UDP through port ${UPORT[$t]}"
  fi
done
for round in $(seq "$ROUNDS"); do
  for rate in "${UDP_RATES[@]}"; do
    for t in "${UDP_OK[@]}"; do
      say "UDP round $round/$ROUNDS, $rate: $t"
      read -r pps loss <<<"$(iperf_udp "${UPORT[$t]}" "$rate")"
      UPPS[$t,$rate]+="$pps " ULOSS[$t,$rate]+="$loss "
    done
  done
done
for rate in "${UDP_RATES[@]}"; do
  for t in "${UDP_OK[@]}"; do
    R[$t,udp_$rate]=$(echo "${UPPS[$t,$rate]}" | median) R[$t,udploss_$rate]=$(echo "${ULOSS[$t,$rate]}" | median)
  done
done

# ---------------------------------------------------------------- setup latency
percentile() { sort -n "$1" | awk -v q="$2" '{a[NR] = $1} END {i = int(NR * q); if (i < NR * q) i++; print a[i]}'; }
for t in "${TOOLS[@]}"; do "$PROBE" latency "127.0.0.1:${EPORT[$t]}" 20 >/dev/null; done
for round in $(seq "$ROUNDS"); do
  for t in "${TOOLS[@]}"; do
    say "setup latency round $round/$ROUNDS: $t"
    n=$((LAT_N / ROUNDS + (round <= LAT_N % ROUNDS ? 1 : 0)))
    "$PROBE" latency "127.0.0.1:${EPORT[$t]}" "$n" "$WORK/latency-$t.txt" >/dev/null
  done
done
for t in "${TOOLS[@]}"; do
  R[$t,p50]=$(percentile "$WORK/latency-$t.txt" 0.50) R[$t,p99]=$(percentile "$WORK/latency-$t.txt" 0.99)
done

# ---------------------------------------------------------------- idle tunnels
open_idle() { # name port n: opens n idle tunnels, sets LAST to the holder
  spawn "$1" "$PROBE" idle "127.0.0.1:$2" "$3" 900
  local holder=$LAST
  for _ in $(seq 1200); do
    grep -qs '^open' "$WORK/$1.log" && { LAST=$holder; sleep 2; return 0; }
    alive "$holder" || { cat "$WORK/$1.log" >&2; return 1; }
    sleep 0.25
  done
  return 1
}
per_tunnel() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.1f", (b - a) / n}'; }
# The public path's visitors hold their connections to the public port: the relay then
# carries each tunnel as the visitor's TCP plus the listener's rendezvous WebSocket.
for t in "${PEER_TOOLS[@]}" "${HYCOS[@]}" "${PUBLICS[@]}"; do
  say "idle memory: $t ($IDLE_N tunnels)"
  server=${SERVER[$t]}
  before=$(rss_kb "$server")
  [[ -n ${LISTEN[$t]:-} ]] && l_before=$(rss_kb "${LISTEN[$t]}")
  [[ -n ${CONNECT[$t]:-} ]] && c_before=$(rss_kb "${CONNECT[$t]}")
  if open_idle "idle-$t" "${EPORT[$t]}" "$IDLE_N"; then
    holder=$LAST
    R[$t,rss]=$(per_tunnel "$before" "$(rss_kb "$server")" "$IDLE_N")
    [[ -n ${LISTEN[$t]:-} ]] && R[$t,rss_listen]=$(per_tunnel "$l_before" "$(rss_kb "${LISTEN[$t]}")" "$IDLE_N")
    if [[ -n ${CONNECT[$t]:-} ]]; then
      R[$t,rss_connect]=$(per_tunnel "$c_before" "$(rss_kb "${CONNECT[$t]}")" "$IDLE_N")
      more=$((MAX_N - IDLE_N))
      say "$t: $more more, $MAX_N concurrent tunnels"
      if open_idle "idle-$t-more" "${EPORT[$t]}" "$more" && alive "$server" &&
        "$PROBE" latency "127.0.0.1:${EPORT[$t]}" 10 >/dev/null; then
        # shellcheck disable=SC2012 # fd names are numbers
        R[$t,max]="up, $MAX_N tunnels echoing, $(ls "/proc/$server/fd" | wc -l) fds, $(rss_kb "$server") KiB RSS"
        kill "$LAST"
      else
        R[$t,max]="FAILED at $MAX_N tunnels (relay $(alive "$server" && echo up || echo down))"
      fi
    fi
    kill "$holder"
  else
    R[$t,rss]="failed"
  fi
  sleep 3
done

# ---------------------------------------------------------------- report
best() { # metric lower|higher -> best peer value
  local m=$1 dir=$2 v out=""
  for p in "${PEER_TOOLS[@]}"; do
    v=${R[$p,$m]:-}
    [[ $v =~ ^[0-9.]+$ ]] || continue
    if [[ -z $out ]] || awk -v a="$v" -v b="$out" -v d="$dir" 'BEGIN {exit !((d == "higher") ? a > b : a < b)}'; then out=$v; fi
  done
  echo "$out"
}
ratio() { [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] && awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "-"}' || echo "-"; }
fmt() { [[ $1 =~ ^[0-9.]+$ ]] && awk -v v="$1" -v s="$2" 'BEGIN {printf "%.*f", s, v}' || echo "${1:--}"; }
# Ratio columns, "tool:against": against a tool, or "best" (the best peer in this run).
RATIOS=(hyco:best)
[[ " ${PUBLICS[*]} " == *" hyco-public "* ]] && RATIOS+=(hyco-public:best)
RATIOS+=(hyco:direct)
[[ " ${PUBLICS[*]} " == *" hyco-public "* ]] && RATIOS+=(hyco-public:direct)
[[ -n $HYCO_BASE ]] && RATIOS+=(hyco:hyco-base)
[[ " ${PUBLICS[*]} " == *" hyco-base-public "* && " ${PUBLICS[*]} " == *" hyco-public "* ]] &&
  RATIOS+=(hyco-public:hyco-base-public)
ratio_of() { # tool against metric lower|higher -> e.g. 1.14x
  local against=${R[$2,$3]:-}
  [[ $2 == best ]] && against=$(best "$3" "$4")
  ratio "${R[$1,$3]:-}" "$against"
}
row() { # label metric lower|higher decimals divisor
  local label=$1 m=$2 dir=$3 dec=$4 div=${5:-1} cells="" t v r
  for t in "${TOOLS[@]}"; do
    v=${R[$t,$m]:-}
    [[ $v =~ ^[0-9.]+$ ]] && v=$(awk -v v="$v" -v d="$div" 'BEGIN {print v / d}')
    cells+=" $(fmt "$v" "$dec") |"
  done
  for r in "${RATIOS[@]}"; do cells+=" $(ratio_of "${r%%:*}" "${r#*:}" "$m" "$dir") |"; done
  printf '| %s |%s\n' "$label" "$cells"
}
header() { # the table's first two lines
  local names="" rules="" t r against
  for t in "${TOOLS[@]}"; do names+=" ${LABEL[$t]} |" rules+=" --- |"; done
  for r in "${RATIOS[@]}"; do
    against=${r#*:}
    [[ $against == best ]] && against="best peer" || against=${LABEL[$against]}
    names+=" ${LABEL[${r%%:*}]} / $against |" rules+=" --- |"
  done
  printf '| metric |%s\n| --- |%s\n' "$names" "$rules"
}
# Targets (issue 13): "label|tool|metric|lower or higher|at least or at most|target|unit"; a
# ratio to the best peer unless the unit says KiB. The UDP ones are added per rate below.
TARGETS=(
  "single stream|hyco|single|higher|>=|1.0|x"
  "single stream reverse (-R)|hyco|reverse|higher|>=|1.0|x"
  "8 streams|hyco|parallel|higher|>=|1.0|x"
  "setup latency p50|hyco|p50|lower|<=|1.25|x"
  "single stream|hyco-public|single|higher|>=|1.2|x"
  "single stream reverse (-R)|hyco-public|reverse|higher|>=|1.2|x"
  "8 streams|hyco-public|parallel|higher|>=|1.2|x"
  "setup latency p50|hyco-public|p50|lower|<=|1.0|x"
  "setup latency p99|hyco-public|p99|lower|<=|1.2|x"
  "relay RSS per idle tunnel|hyco-public|rss|lower|<=|12|KiB"
)
for rate in "${UDP_RATES[@]}"; do
  TARGETS+=("UDP received packets/s at $rate (against rathole)|hyco-public|udp_$rate|higher|>=|1.0|x")
  TARGETS+=("UDP received packets/s at $rate (against rathole)|hyco-udp|udp_$rate|higher|>=|1.0|x")
done
best_udp() { # metric -> the best rathole value (more packets/s)
  local v out="" p
  for p in "${UDP_PEERS[@]}"; do
    v=${R[$p,$1]:-}
    [[ $v =~ ^[0-9.]+$ ]] || continue
    if [[ -z $out ]] || awk -v a="$v" -v b="$out" 'BEGIN {exit !(a > b)}'; then out=$v; fi
  done
  echo "$out"
}
target_row() { # one TARGETS entry -> a table line
  local label tool m dir op goal unit value verdict
  IFS='|' read -r label tool m dir op goal unit <<<"$1"
  if [[ $unit == KiB ]]; then
    value=$(fmt "${R[$tool,$m]:-}" 1)
  elif [[ $m == udp_* ]]; then
    value=$(ratio "${R[$tool,$m]:-}" "$(best_udp "$m")")
  else
    value=$(ratio_of "$tool" best "$m" "$dir")
  fi
  local v=${value%x}
  if [[ ! $v =~ ^[0-9.]+$ ]]; then
    verdict="not measured"
  elif awk -v v="$v" -v g="$goal" -v op="$op" 'BEGIN {exit !((op == ">=") ? v >= g : v <= g)}'; then
    verdict="met"
  else
    verdict=$(awk -v v="$v" -v g="$goal" -v u="$unit" 'BEGIN {
      printf "missed by %.2f%s (%+.0f%%)", (v > g ? v - g : g - v), (u == "x" ? "x" : " " u), (v - g) / g * 100 }')
  fi
  [[ $unit == KiB ]] && value+=" KiB" goal+=" KiB" || goal+="x"
  printf '| %s | %s | %s | %s %s | %s |\n' "${LABEL[$tool]}" "$label" "$value" "$op" "$goal" "$verdict"
}
udp_rows() { # the UDP table
  local rate t names="" rules="" cells offered
  for t in "${UDP_TOOLS[@]}"; do names+=" ${LABEL[$t]} |" rules+=" --- |"; done
  for t in "${PUBLICS[@]}" "${HC_UDPS[@]}"; do names+=" ${LABEL[$t]} / best rathole |" rules+=" --- |"; done
  ((${#PUBLICS[@]} == 2)) && names+=" hyco public / hyco base public |" rules+=" --- |"
  printf '| offered rate (iperf3 -u -l %s) |%s\n| --- |%s\n' "$UDP_LEN" "$names" "$rules"
  for rate in "${UDP_RATES[@]}"; do
    offered=$(awk -v r="$rate" -v l="$UDP_LEN" 'BEGIN {
      m = 1; u = substr(r, length(r)); if (u ~ /[kK]/) m = 1e3; if (u ~ /[mM]/) m = 1e6; if (u ~ /[gG]/) m = 1e9
      printf "%.0f", (r + 0) * m / (l * 8) }')
    cells=""
    for t in "${UDP_TOOLS[@]}"; do
      if [[ -n ${R[$t,udp_$rate]:-} ]]; then
        cells+=" $(fmt "${R[$t,udp_$rate]}" 0) pkt/s, $(fmt "${R[$t,udploss_$rate]}" 2)% lost |"
      else
        cells+=" not measured |"
      fi
    done
    for t in "${PUBLICS[@]}" "${HC_UDPS[@]}"; do cells+=" $(ratio "${R[$t,udp_$rate]:-}" "$(best_udp "udp_$rate")") |"; done
    ((${#PUBLICS[@]} == 2)) && cells+=" $(ratio "${R[hyco-public,udp_$rate]:-}" "${R[hyco-base-public,udp_$rate]:-}") |"
    printf '| %s (%s pkt/s) |%s\n' "$rate" "$offered" "$cells"
  done
}
say "Unix-socket forward against a TCP one: CPU per GB (bench/unix_cpu.sh)"
UNIX_CPU=$(BENCH_HYCO="$HYCO" BENCH_UNIX_PORT=$((BASE + 200)) BENCH_ROUNDS="$ROUNDS" bash "$ROOT/bench/unix_cpu.sh") ||
  UNIX_CPU="(the measure failed: run bash bench/unix_cpu.sh alone)"

hyco_version() { # binary: its git commit when it is this tree's build, else its path
  if [[ $1 == "$ROOT/target/release/hyco" ]]; then
    echo "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+changes')"
  else
    echo "$1"
  fi
}
# HTTP mode last, on its own: nothing else runs meanwhile.
http_bench >"$WORK/http.md"
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
  echo "# hyco benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($cpu_model), Linux $(uname -r), loopback."
  echo "hyco $(hyco_version "$HYCO"),${HYCO_BASE:+ hyco base $(hyco_version "$HYCO_BASE"),}"
  echo "$("$BORE" --version), rathole $("$RATHOLE" --version 2>/dev/null | awk '/Build Version/ {print $3}'), frp $("$FRPS" --version),"
  echo "chisel $("$CHISEL" --version), $(iperf3 --version | head -1 | cut -d' ' -f1-2)."
  echo "Paths: \"hyco\" is the connect path (visitor -> hyco connect -> serve -> listen -> target, one"
  echo "process hop more than the peers by the protocol's design); \"hyco public\" is the public-port"
  echo "path (visitor -> serve -> listen -> target), the peers' topology. Each has its own relay."
  echo "Throughput: iperf3 -t $SECS, median of $ROUNDS rounds with the tools interleaved. Latency: $LAT_N"
  echo "new connections each (in $ROUNDS interleaved rounds), connect until an echoed byte is back."
  echo "Memory: relay (server) VmRSS growth with $IDLE_N idle tunnels open, divided by $IDLE_N."
  echo "CPU: relay utime+stime over all throughput runs divided by the bytes moved; \"all"
  echo "processes\" adds the tunnel's clients. Ratios above 1 are better for throughput, below 1"
  echo "for the rest."
  echo
  header
  row "single stream, MB/s" single higher 0
  row "single stream reverse (-R), MB/s" reverse higher 0
  row "8 streams total (-P 8), MB/s" parallel higher 0
  row "setup latency p50, ms" p50 lower 3 1000
  row "setup latency p99, ms" p99 lower 3 1000
  row "relay RSS per idle tunnel, KiB" rss lower 1
  row "relay CPU per GB, s" cpu lower 2
  row "all processes' CPU per GB, s" cpuall lower 2
  echo
  echo "UDP: iperf3 -u -t $SECS at a fixed offered rate through each tool's UDP port (rathole: a"
  echo "\`type = \"udp\"\` service; hyco public: a \`udp://\` target's public port; hyco connect udp:"
  echo "\`hyco connect --bind udp:\` -> serve -> listen -> the \`udp://\` target), iperf3's TCP control"
  echo "connection on the same port number; datagrams received per second and the share lost as"
  echo "iperf3's server counts them, median of $ROUNDS interleaved rounds."
  echo
  udp_rows
  echo
  echo "Targets (issue 13), as ratios to the best peer in this run (UDP: the better rathole):"
  echo
  echo "| path | metric | measured | target | verdict |"
  echo "| --- | --- | --- | --- | --- |"
  for target in "${TARGETS[@]}"; do target_row "$target"; done
  echo
  echo "Throughput samples, MB/s (single, reverse, 8 streams; one per round):"
  echo
  for t in "${TOOLS[@]}"; do
    # shellcheck disable=SC2086 # samples are words
    printf -- '- %s: %s| %s| %s\n' "$t" "$(printf '%.0f ' ${SAMPLES[$t,single]})" \
      "$(printf '%.0f ' ${SAMPLES[$t,reverse]})" "$(printf '%.0f ' ${SAMPLES[$t,parallel]})"
  done
  echo
  echo "UDP samples, received packets/s and % lost (one per round):"
  echo
  for rate in "${UDP_RATES[@]}"; do
    for t in "${UDP_OK[@]}"; do
      # shellcheck disable=SC2086 # samples are words
      printf -- '- %s, %s: %s| %s\n' "$t" "$rate" "$(printf '%.0f ' ${UPPS[$t,$rate]})" "$(printf '%.2f ' ${ULOSS[$t,$rate]})"
    done
  done
  echo
  echo "Unix sockets (issue 16: a Unix-socket forward costs no more CPU per GB than a TCP one):"
  echo
  echo "$UNIX_CPU"
  echo
  for t in "${HYCOS[@]}"; do
    echo "${LABEL[$t]} clients, RSS per idle tunnel: connect ${R[$t,rss_connect]:--} KiB, listen ${R[$t,rss_listen]:--} KiB."
    echo "${LABEL[$t]} serve at $MAX_N concurrent tunnels (fd limit $(ulimit -n)): ${R[$t,max]:--}."
  done
  for t in "${PUBLICS[@]}"; do
    echo "${LABEL[$t]}: listen RSS per idle tunnel ${R[$t,rss_listen]:--} KiB."
  done
  for n in "${NOTES[@]}"; do echo "$n"; done
  echo
  cat "$WORK/http.md"
} >"$WORK/results.md"
cat "$WORK/results.md"
cp "$WORK/results.md" "$ROOT/bench/RESULTS.md"
say "written to bench/RESULTS.md; logs in $WORK"
