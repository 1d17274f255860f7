# shellcheck shell=bash
# What the benchmark scripts share about the relays they start (sourced by bench/run.sh,
# whose bench/http.sh uses it too, and by bench/unix_cpu.sh): the key of their rule, and
# a relay configuration holding it.

# The key of the rule `bench`, which every benchmark client signs with.
BENCH_KEY=YmVuY2hiZW5jaGJlbmNoYmVuY2hiZW5jaGJlbmNoYmU=

# bench_relay_config FILE [TOML]...: writes a relay configuration to FILE: the rule `bench`
# (Manage, BENCH_KEY), then each TOML piece, a blank line before each.
bench_relay_config() {
  local file=$1 piece
  shift
  printf '[[rules]]\nname = "bench"\nkey = "%s"\nrights = ["Manage"]\n' "$BENCH_KEY" >"$file"
  for piece in "$@"; do printf '\n%s\n' "$piece" >>"$file"; done
}
