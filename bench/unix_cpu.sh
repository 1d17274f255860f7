#!/usr/bin/env bash
# CPU per GB of a Unix-socket forward against a TCP one (issue 16: "no more CPU per GB"):
# one relay (`hyco serve`), one `hyco listen` with a TCP target and a Unix-socket target,
# and two `hyco connect`s, one bound to a TCP port, one to a Unix socket. A Python source
# pushes BENCH_UNIX_MB MiB through each in turn (rounds interleaved), half-closes, and waits
# for the sink's count of what arrived; the CPU is user+sys of serve, listen and that
# connect (from /proc/PID/stat) over the transfer. Prints a Markdown table and the ratio.
# Run by bench/run.sh, or alone:
#
#   bash bench/unix_cpu.sh                       # this tree's release build
#   BENCH_HYCO=target/debug/hyco bash bench/unix_cpu.sh
#
# Knobs: BENCH_HYCO (binary), BENCH_UNIX_MB (MiB per transfer, 1024), BENCH_ROUNDS (3),
# BENCH_UNIX_PORT (first of 4 TCP ports, 24300).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
HYCO=${BENCH_HYCO:-$ROOT/target/release/hyco}
MB=${BENCH_UNIX_MB:-1024}
ROUNDS=${BENCH_ROUNDS:-3}
PORT=${BENCH_UNIX_PORT:-24300}
# shellcheck source=bench/relay.sh
source "$ROOT/bench/relay.sh"
CLK_TCK=$(getconf CLK_TCK)
[[ -x $HYCO ]] || { echo "unix_cpu: $HYCO is not built (cargo build --release)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/hyco-unix-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
spawn() { # name command...: in the background, logs to $WORK/name.log, sets LAST
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  LAST=$!
  PIDS+=("$LAST")
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sum_ticks() { local s=0; for p in "$@"; do s=$((s + $(cpu_ticks "$p"))); done; echo "$s"; }
wait_for() { # what test...: until the test passes (10 s)
  local what=$1
  shift
  for _ in $(seq 200); do "$@" 2>/dev/null && return 0; sleep 0.05; done
  echo "unix_cpu: $what never came up; logs in $WORK" >&2
  exit 1
}

# The sink (TCP and Unix): reads to EOF, answers the count as 8 bytes, closes. The source:
# writes N bytes in 1 MiB pieces, half-closes, reads the count.
cat >"$WORK/sink_source.py" <<'EOF'
import os, socket, struct, sys, threading

def serve(sock):
    sock.listen(16)
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=drain, args=(conn,), daemon=True).start()

def drain(conn):
    n, buf = 0, bytearray(1 << 20)
    while True:
        got = conn.recv_into(buf)
        if not got:
            break
        n += got
    conn.sendall(struct.pack(">Q", n))
    conn.close()

if sys.argv[1] == "sink":
    tcp = socket.create_server(("127.0.0.1", int(sys.argv[2])))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(sys.argv[3])
    threading.Thread(target=serve, args=(tcp,), daemon=True).start()
    serve(unix)
else:
    addr, total = sys.argv[2], int(sys.argv[3])
    if addr.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(addr[5:])
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    piece = os.urandom(1 << 20)
    left = total
    while left > 0:
        n = min(left, len(piece))
        s.sendall(piece[:n])
        left -= n
    s.shutdown(socket.SHUT_WR)
    got = b""
    while len(got) < 8:
        more = s.recv(8 - len(got))
        if not more:
            break
        got += more
    delivered = struct.unpack(">Q", got)[0] if len(got) == 8 else -1
    print(delivered)
    sys.exit(0 if delivered == total else 1)
EOF

SINK_PORT=$PORT RELAY_PORT=$((PORT + 1)) BIND_PORT=$((PORT + 2))
spawn sink python3 "$WORK/sink_source.py" sink "$SINK_PORT" "$WORK/sink.sock"
wait_for "the sink" test -S "$WORK/sink.sock"
bench_relay_config "$WORK/relay.toml" $'[[hybrid_connections]]\nname = "bench"'
HENV=(env HOME="$WORK" XDG_CONFIG_HOME="$WORK/config" HYCO_DATA_DIR="$WORK/data")
HCRED=(--endpoint "ws://127.0.0.1:$RELAY_PORT" --key-name bench --key "$BENCH_KEY")
spawn serve "${HENV[@]}" "$HYCO" serve --bind "127.0.0.1:$RELAY_PORT" --config "$WORK/relay.toml"
SERVE=$LAST
wait_for "hyco serve" bash -c "exec 3<>/dev/tcp/127.0.0.1/$RELAY_PORT"
spawn listen "${HENV[@]}" "$HYCO" listen bench --to "tcp=127.0.0.1:$SINK_PORT" --to "unix=unix:$WORK/sink.sock" "${HCRED[@]}"
LISTEN=$LAST
spawn connect-tcp "${HENV[@]}" "$HYCO" connect bench/tcp --bind "127.0.0.1:$BIND_PORT" "${HCRED[@]}"
CONNECT_TCP=$LAST
spawn connect-unix "${HENV[@]}" "$HYCO" connect bench/unix --bind "unix:$WORK/hyco.sock" "${HCRED[@]}"
CONNECT_UNIX=$LAST
wait_for "connect's TCP port" bash -c "exec 3<>/dev/tcp/127.0.0.1/$BIND_PORT"
wait_for "connect's Unix socket" test -S "$WORK/hyco.sock"
sleep 1 # the prewarmed tunnels

declare -A TICKS BYTES SECS
BYTES_PER=$((MB * 1024 * 1024))
for round in $(seq "$ROUNDS"); do
  for kind in tcp unix; do
    if [[ $kind == tcp ]]; then addr=127.0.0.1:$BIND_PORT connect=$CONNECT_TCP; else addr=unix:$WORK/hyco.sock connect=$CONNECT_UNIX; fi
    echo "unix_cpu: round $round/$ROUNDS, $kind: $MB MiB" >&2
    before=$(sum_ticks "$SERVE" "$LISTEN" "$connect")
    start=$(date +%s.%N)
    python3 "$WORK/sink_source.py" source "$addr" "$BYTES_PER" >/dev/null || { echo "unix_cpu: $kind transfer incomplete" >&2; exit 1; }
    end=$(date +%s.%N)
    TICKS[$kind]=$((${TICKS[$kind]:-0} + $(sum_ticks "$SERVE" "$LISTEN" "$connect") - before))
    BYTES[$kind]=$((${BYTES[$kind]:-0} + BYTES_PER))
    SECS[$kind]=$(awk -v a="${SECS[$kind]:-0}" -v s="$start" -v e="$end" 'BEGIN {print a + e - s}')
  done
done
per_gb() { awk -v k="${TICKS[$1]}" -v b="${BYTES[$1]}" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", k / hz / (b / 1e9)}'; }
mbs() { awk -v b="${BYTES[$1]}" -v s="${SECS[$1]}" 'BEGIN {printf "%.0f", b / 1e6 / s}'; }
tcp=$(per_gb tcp) unix=$(per_gb unix)
echo "| forward (connect -> serve -> listen -> target) | CPU s per GB (serve+listen+connect) | MB/s |"
echo "| --- | --- | --- |"
echo "| TCP bind -> TCP target | $tcp | $(mbs tcp) |"
echo "| Unix bind -> Unix target | $unix | $(mbs unix) |"
echo
echo "Unix / TCP CPU per GB: $(awk -v u="$unix" -v t="$tcp" 'BEGIN {if (t > 0) printf "%.2fx", u / t; else print "-"}') (target: at most 1.00x); $ROUNDS rounds of $MB MiB each, interleaved; $(basename "$HYCO") at $HYCO."
