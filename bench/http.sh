# shellcheck shell=bash
# HTTP mode (issue 18), sourced by bench/run.sh: small GETs with wrk from a fixed number of
# concurrent keep-alive clients, direct to a small app (`probe web`), through frp's HTTP
# virtual host, through hyco's HTTP mode (`serve` + `listen --http`), and through hyco with
# `Connection: close` on every request (one request per connection, as before keep-alive),
# and through a second listener with the request inspector on (`--inspect`, issue 19).
# `bash bench/run.sh http` runs only this part (~2 minutes) and writes bench/RESULTS-http.md;
# the full run puts the same section in bench/RESULTS.md.
#
# Knobs (environment): BENCH_HTTP_SECS (wrk seconds per run, 5), BENCH_HTTP_CONNS (concurrent
# connections, 32), BENCH_HTTP_THREADS (wrk threads, 2); rounds: BENCH_ROUNDS.
# Uses run.sh's spawn, wait_listening, say, die, $WORK, $BASE, $ROUNDS, $HYCO, $FRPS, $FRPC, $PROBE, and
# bench/relay.sh's bench_relay_config and $BENCH_KEY.

HTTP_SECS=${BENCH_HTTP_SECS:-5}
HTTP_CONNS=${BENCH_HTTP_CONNS:-32}
HTTP_THREADS=${BENCH_HTTP_THREADS:-2}

http_median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# wrk's latency in ms from its "50%  1.23ms" line.
wrk_ms() { # file percentile
  awk -v p="$2%" '$1 == p {
    v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
    m = (u == "us") ? 0.001 : (u == "s") ? 1000 : (u == "m") ? 60000 : 1
    printf "%.3f", v * m; exit }' "$1"
}

http_bench() { # prints the results section (markdown) on stdout
  local app=$((BASE + 100)) frp_ctl=$((BASE + 101)) frp_http=$((BASE + 102)) relay=$((BASE + 103))
  local inspector=$((BASE + 104))
  say "HTTP mode: app on $app, frp vhost on $frp_http, hyco relay on $relay"
  spawn web-app "$PROBE" web "127.0.0.1:$app" 7200
  wait_listening "$app"
  cat >"$WORK/frps-http.toml" <<EOF
bindAddr = "127.0.0.1"
bindPort = $frp_ctl
vhostHTTPPort = $frp_http
auth.token = "bench"
EOF
  cat >"$WORK/frpc-http.toml" <<EOF
serverAddr = "127.0.0.1"
serverPort = $frp_ctl
auth.token = "bench"

[[proxies]]
name = "web"
type = "http"
localIP = "127.0.0.1"
localPort = $app
customDomains = ["web.bench"]
EOF
  spawn frps-http "$FRPS" -c "$WORK/frps-http.toml"
  wait_listening "$frp_http"
  spawn frpc-http "$FRPC" -c "$WORK/frpc-http.toml"
  # hyco: the HC `web` open to anyone, as a public web app is.
  bench_relay_config "$WORK/relay-http.toml" $'[[hybrid_connections]]\nname = "web"\nrequires_client_authorization = false' \
    $'[[hybrid_connections]]\nname = "webi"\nrequires_client_authorization = false' $'[limits]\nmax_connections = 19500'
  local henv=(env HOME="$WORK/hyco-http" XDG_CONFIG_HOME="$WORK/hyco-http/config" HYCO_DATA_DIR="$WORK/hyco-http/data")
  mkdir -p "$WORK/hyco-http"
  spawn hyco-http-serve "${henv[@]}" "$HYCO" serve --bind "127.0.0.1:$relay" --config "$WORK/relay-http.toml" --no-profile
  wait_listening "$relay"
  spawn hyco-http-listen "${henv[@]}" "$HYCO" listen web --http --to "127.0.0.1:$app" \
    --endpoint "ws://127.0.0.1:$relay" --key-name bench --key "$BENCH_KEY"
  spawn hyco-http-listen-inspect "${henv[@]}" "$HYCO" listen webi --http --to "127.0.0.1:$app" \
    --inspect "127.0.0.1:$inspector" --endpoint "ws://127.0.0.1:$relay" --key-name bench --key "$BENCH_KEY"

  local -A url host extra
  local kinds=(direct frp hyco hyco-close hyco-inspect)
  url[direct]="http://127.0.0.1:$app/" url[frp]="http://127.0.0.1:$frp_http/"
  url[hyco]="http://127.0.0.1:$relay/web/" url[hyco-close]="http://127.0.0.1:$relay/web/"
  url[hyco-inspect]="http://127.0.0.1:$relay/webi/"
  host[frp]="web.bench"
  extra[hyco-close]="Connection: close"
  for k in "${kinds[@]}"; do
    local ok=0
    for _ in $(seq 100); do
      if curl -fsS -o /dev/null ${host[$k]:+-H "Host: ${host[$k]}"} "${url[$k]}" 2>/dev/null; then ok=1; break; fi
      sleep 0.1
    done
    ((ok)) || die "HTTP: no 200 from ${url[$k]} ($k)"
  done

  local -A rps p50 p99 errs
  for round in $(seq "$ROUNDS"); do
    for k in "${kinds[@]}"; do
      say "HTTP round $round/$ROUNDS: $k"
      local args=(-t "$HTTP_THREADS" -c "$HTTP_CONNS" -d "${HTTP_SECS}s" --latency)
      [[ -n ${host[$k]:-} ]] && args+=(-H "Host: ${host[$k]}")
      [[ -n ${extra[$k]:-} ]] && args+=(-H "${extra[$k]}")
      wrk "${args[@]}" "${url[$k]}" >"$WORK/wrk-$k-$round.txt" 2>&1 || die "wrk through $k failed"
      rps[$k]+="$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk-$k-$round.txt") "
      p50[$k]+="$(wrk_ms "$WORK/wrk-$k-$round.txt" 50) "
      p99[$k]+="$(wrk_ms "$WORK/wrk-$k-$round.txt" 99) "
      errs[$k]+="$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' "$WORK/wrk-$k-$round.txt")"
    done
  done
  local -A M
  for k in "${kinds[@]}"; do
    M[$k,rps]=$(echo "${rps[$k]}" | http_median) M[$k,p50]=$(echo "${p50[$k]}" | http_median) M[$k,p99]=$(echo "${p99[$k]}" | http_median)
  done
  declare -A HLABEL=([direct]="direct to the app" [frp]="frp HTTP virtual host" [hyco]="hyco HTTP mode, kept connections"
    [hyco-close]="hyco HTTP mode, \`Connection: close\` (one request per connection)"
    [hyco-inspect]="hyco HTTP mode, kept connections, \`listen --inspect\` recording each request")
  echo "## HTTP mode: small GETs"
  echo
  echo "wrk -t$HTTP_THREADS -c$HTTP_CONNS -d${HTTP_SECS}s --latency, a GET of a 31-byte body from a tokio app"
  echo "(\`probe web\`) that keeps connections; frp $("$FRPS" --version) with \`vhostHTTPPort\` and an"
  echo "\`http\` proxy (\`Host: web.bench\`); hyco: \`serve\` with the HC open to anyone and \`listen --http\`."
  echo "Median of $ROUNDS interleaved rounds; wrk's own p50 and p99 of each run."
  echo
  echo "| path | requests/s | p50, ms | p99, ms | vs frp, requests/s |"
  echo "| --- | --- | --- | --- | --- |"
  for k in "${kinds[@]}"; do
    printf '| %s | %.0f | %.3f | %.3f | %s |\n' "${HLABEL[$k]}" "${M[$k,rps]}" "${M[$k,p50]}" "${M[$k,p99]}" \
      "$(awk -v a="${M[$k,rps]}" -v b="${M[frp,rps]}" 'BEGIN {printf "%.2fx", a / b}')"
  done
  echo
  local ratio verdict_rps verdict_p50
  ratio=$(awk -v a="${M[hyco,rps]}" -v b="${M[frp,rps]}" 'BEGIN {printf "%.2f", a / b}')
  verdict_rps=$(awk -v r="$ratio" 'BEGIN {print (r >= 1.2) ? "met" : "not met"}')
  verdict_p50=$(awk -v a="${M[hyco,p50]}" -v b="${M[frp,p50]}" 'BEGIN {print (a <= b) ? "met" : "not met"}')
  echo "Targets (issue 18): hyco's requests/s at least 1.2x frp's: ${ratio}x, $verdict_rps; p50 at most"
  echo "frp's: ${M[hyco,p50]} ms against ${M[frp,p50]} ms, $verdict_p50."
  echo
  echo "The request inspector's cost (issue 19): with \`--inspect\`, $(awk -v a="${M[hyco-inspect,rps]}" -v b="${M[hyco,rps]}" \
    'BEGIN {printf "%.2fx", a / b}') the requests/s without it, p50 ${M[hyco-inspect,p50]} ms against ${M[hyco,p50]} ms."
  echo
  echo "Requests/s samples (one per round):"
  echo
  for k in "${kinds[@]}"; do
    # shellcheck disable=SC2086 # samples are words
    printf -- '- %s: %s\n' "$k" "$(printf '%.0f ' ${rps[$k]})"
  done
  for k in "${kinds[@]}"; do
    [[ -n ${errs[$k]// /} ]] && echo "- $k, wrk reported: ${errs[$k]}"
  done
  return 0
}
