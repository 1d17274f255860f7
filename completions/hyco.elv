
use builtin;
use str;

set edit:completion:arg-completer[hyco] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'hyco'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'hyco'= {
            cand --log-format 'Log line format on stderr'
            cand --threads 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)'
            cand -v 'More log output (repeat for more); RUST_LOG overrides'
            cand --verbose 'More log output (repeat for more); RUST_LOG overrides'
            cand -q 'Only errors'
            cand --quiet 'Only errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand serve 'Run a Hybrid Connections relay (Azure-compatible). SIGHUP reads --config again (rules, keys and hybrid connections), keeping everyone connected'
            cand listen 'Accept connections for a hybrid connection and bridge them to local TCP targets'
            cand connect 'Bridge local TCP or Unix-socket connections (or stdin/stdout, or SOCKS5 clients) through the relay to a listener'
            cand up 'Run a machine''s whole set of listeners and connectors from one file (`[[listen]]` and `[[connect]]` tables of their flags), each retried on its own when it fails; SIGHUP reads the file again (changed entries restart, the others keep running)'
            cand demo 'Run a relay, a listener and a connector in one process: a local port that reaches a target through the relay, with no account and no setup'
            cand profile 'Manage the profiles that hold relay endpoints and keys'
            cand token 'Mint a SAS token for one hybrid connection, to hand out instead of a key'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'hyco;serve'= {
            cand --bind 'Address and port to listen on: `PORT` (on 127.0.0.1, this machine only) or `HOST:PORT` (`0.0.0.0:9400` for every interface)'
            cand --config 'Relay configuration (TOML: rules, hybrid connections, limits). Without it, a throwaway relay with a generated key that creates hybrid connections on first listen'
            cand --tls-cert 'TLS certificate chain (PEM); needs --tls-key'
            cand --tls-key 'TLS private key (PEM)'
            cand --public-host 'Host name other machines use to reach this relay, for the printed connection string and the self-signed certificate (default: the bind address, or this machine''s host name when bound to all interfaces)'
            cand --public-ports 'Without --config: the ports listeners may open for anyone (`hyco listen --public`), `FIRST-LAST`, or `off`. They are bound on the --bind address. With --config, `[public_ports]` in the file says'
            cand --profile-name 'The profile to write for clients on this machine. An existing profile of that name that points at another relay is left alone (serve says so)'
            cand --metrics 'Serve Prometheus metrics at http://HOST:PORT/metrics (plain HTTP, no auth: keep it on loopback or a private network), e.g. 127.0.0.1:9464'
            cand --dashboard 'Serve the relay''s status page at http://HOST:PORT/ (JSON at /api/status), e.g. 127.0.0.1:8470. Open on loopback; on any other address each request needs a Manage-rights SAS token of the namespace, or HYCO_DASHBOARD_SECRET, in Authorization'
            cand --cluster 'Be one node of a relay of several that share listeners through this Redis (`redis://HOST:6379/0`, `rediss://` for TLS; no password in it: use `[cluster] password_file`). Overrides `[cluster] redis` in --config'
            cand --log-format 'Log line format on stderr'
            cand --threads 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)'
            cand --tls-self-signed 'Serve TLS with a self-signed certificate (kept in the data directory) and print its SHA-256 fingerprint for clients to pin'
            cand --no-profile 'Do not write a profile for clients on this machine'
            cand -v 'More log output (repeat for more); RUST_LOG overrides'
            cand --verbose 'More log output (repeat for more); RUST_LOG overrides'
            cand -q 'Only errors'
            cand --quiet 'Only errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'hyco;listen'= {
            cand --to 'Target for accepted connections: `PORT` (on 127.0.0.1), `host:port`, a Unix socket `unix:PATH`, or `name=host:port` (`name=unix:PATH`) chosen by the sender''s path (`hyco connect HC/name`); `udp://host:port` for a UDP service (reached by `hyco connect --bind udp:…` or a public UDP port). Repeatable. Optional with --allow'
            cand --allow 'Let senders (`hyco connect HC --socks`) reach destinations this rule matches: `CIDR:PORTS`, `IP:PORTS`, `HOST:PORTS` or `*.DOMAIN:PORTS` (sub-domains only), PORTS `N`, `N-M` or `*`, IPv6 in brackets. A name rule lets the name reach what it resolves to; an address rule is checked against the resolved addresses. Repeatable; default: no dynamic destinations at all'
            cand --connections 'Control channels to keep open, for availability (1-25)'
            cand --inspect 'With --http: serve a request inspector at http://HOST:PORT/ (JSON at /api/requests): the last requests with their headers and bodies (credentials masked), and replay. Open on loopback; on any other address each request needs HYCO_INSPECT_SECRET in Authorization, and without it listen exits'
            cand --inspect-requests 'With --inspect: how many requests the inspector keeps (at most 10000)'
            cand --inspect-body-bytes 'With --inspect: bytes kept of each request and response body (at most 1048576; 0 keeps none). A request whose body was not kept whole cannot be replayed'
            cand --max-rendezvous 'Rendezvous (accepted connections being opened, HTTP requests being answered) to work on at once; the relay''s accepts beyond it are dropped'
            cand --public 'Ask the relay (`hyco serve`) for a public port anyone reaches with a plain TCP or UDP client: `--public` every target on any free port, `--public PORT` the unnamed (or only) target, `--public NAME` or `--public NAME=PORT` a named one. A `udp://` target gets a UDP port. Prints `reachable at HOST:PORT`; the port comes back after a reconnect. Repeatable. Azure Relay has no public ports'
            cand --keepalive 'Seconds a tunnel may stay silent before hyco pings through it, so that relays and firewalls do not drop an idle tunnel (Azure Relay drops idle connections after about 4 minutes); 0: never'
            cand --udp-idle 'Seconds a UDP session from `hyco connect --bind udp:…` may go without a datagram either way before the listener ends it (a public port''s sessions have the relay''s)'
            cand --proxy 'HTTP proxy to the relay: `http://[USER:PASS@]HOST:PORT`, or `none` to go direct whatever HTTPS_PROXY, HTTP_PROXY, ALL_PROXY or the profile''s `proxy` say. NO_PROXY still exempts hosts. Targets are always reached directly'
            cand --token-command 'Shell command that prints a JWT (Microsoft Entra ID, managed identity), run through `sh -c` at startup and before the token expires, e.g. `az account get-access-token --resource https://relay.azure.net/ --query accessToken -o tsv`. Replaces the key or token; give the relay with --endpoint or a profile'
            cand --profile 'Profile name in the config file (HYCO_PROFILE, when no flag names the relay)'
            cand --connection-string 'Connection string (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`). Prefer HYCO_CONNECTION_STRING or a profile: arguments are visible to other users'
            cand --endpoint 'Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`). Repeat it (or separate with commas) for the nodes of one relay: each connection tries them in random order, the next when one cannot be reached'
            cand --key-name 'Key name (SAS rule)'
            cand --key 'Key. Prefer a profile: arguments are visible to other users'
            cand --tls-fingerprint 'SHA-256 fingerprint of a self-signed relay certificate to trust'
            cand --log-format 'Log line format on stderr'
            cand --threads 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)'
            cand --http 'Also answer plain HTTP requests for the hybrid connection (`https://relay/HC/…`) by calling the target over HTTP/1.1, with `/HC` taken off the path. WebSocket senders keep reaching the same target. Without it, HTTP requests get 501'
            cand --keep-path-prefix 'With --http: pass the path on as the client sent it, `/HC` included'
            cand --azbridge 'Senders are azbridge (Azure Relay Bridge `-L`): read each one''s preamble, pick the target by its port name (`--to NAME=…`; with one target, any port number), and answer it as an azbridge listener does'
            cand --wait-for-relay 'When the relay cannot be reached at startup, retry with backoff instead of exiting (exit code 4): for a service that may start before the network is up. Rejected credentials and a missing hybrid connection still exit at startup (once online, the listener retries through them)'
            cand -v 'More log output (repeat for more); RUST_LOG overrides'
            cand --verbose 'More log output (repeat for more); RUST_LOG overrides'
            cand -q 'Only errors'
            cand --quiet 'Only errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'hyco;connect'= {
            cand --target 'Take the whole of HC as the hybrid connection name (for names holding `/`) and use this target name'
            cand --bind 'Where to accept local connections: `PORT` (on 127.0.0.1), `HOST:PORT`, a Unix socket `unix:PATH` (created; a stale socket there is replaced; removed on exit), or with `udp:` (`udp:5353`, `udp:0.0.0.0:5353`) a UDP port, each peer address a session with a tunnel of its own, to a listener''s `udp://` target'
            cand --bind-mode 'For a Unix socket (--bind or -L unix:PATH): the socket''s permissions, in octal (default 0600: its owner only; 0660 lets its group in)'
            cand -L 'Forward a local address to a target, as ssh -L does: `LOCAL:REMOTE`, LOCAL as --bind takes it, REMOTE a target name of HC (`9000:web`, `127.0.0.1:2222:ssh`, `udp:5353:dns`), or `HC` / `HC/NAME` when no HC is given (`9000:home/web`). Repeatable: each forward runs beside the others, with its own tunnels and counters'
            cand --forward 'Forward a local address to a target, as ssh -L does: `LOCAL:REMOTE`, LOCAL as --bind takes it, REMOTE a target name of HC (`9000:web`, `127.0.0.1:2222:ssh`, `udp:5353:dns`), or `HC` / `HC/NAME` when no HC is given (`9000:home/web`). Repeatable: each forward runs beside the others, with its own tunnels and counters'
            cand -D 'Serve SOCKS5 here (as `ssh -D`; beside --bind and -L if given): each CONNECT reaches its destination through the listener, which allows it or not (`hyco listen --allow`). No authentication unless --socks-user: bind to loopback or a trusted network. `PORT` (on 127.0.0.1) or `HOST:PORT`'
            cand --socks 'Serve SOCKS5 here (as `ssh -D`; beside --bind and -L if given): each CONNECT reaches its destination through the listener, which allows it or not (`hyco listen --allow`). No authentication unless --socks-user: bind to loopback or a trusted network. `PORT` (on 127.0.0.1) or `HOST:PORT`'
            cand --socks-user 'With --socks: clients must give this user name and the password in HYCO_SOCKS_PASSWORD (RFC 1929); those that offer no user name and password are turned away'
            cand --prewarm 'With --bind and -L: tunnels to keep open ahead of need, so that a new connection does not wait for the rendezvous (0 turns this off). A hyco listener reaches the target only when a tunnel is used; with another listener this turns itself off. Default: 8, and 0 against Azure Relay (*.servicebus.windows.net and its other clouds), where it is unverified'
            cand --keepalive 'Seconds a tunnel may stay silent before hyco pings through it, so that relays and firewalls do not drop an idle tunnel (Azure Relay drops idle connections after about 4 minutes); 0: never'
            cand --azbridge-port 'The listener is azbridge (Azure Relay Bridge `-T`): start each tunnel with its preamble for this port name (its `-T` name, by default the target''s port number). No prewarming'
            cand --udp-idle 'For a UDP forward (udp:… with --bind or -L): seconds a session may go without a datagram either way before it ends (its peer''s next datagram opens a new one). Default: 60'
            cand --udp-sessions 'For a UDP forward (udp:… with --bind or -L): sessions (local peer addresses) at once; a new peer''s datagrams beyond are dropped, counted and logged. Default: 1024'
            cand --proxy 'HTTP proxy to the relay: `http://[USER:PASS@]HOST:PORT`, or `none` to go direct whatever HTTPS_PROXY, HTTP_PROXY, ALL_PROXY or the profile''s `proxy` say. NO_PROXY still exempts hosts. Targets are always reached directly'
            cand --token-command 'Shell command that prints a JWT (Microsoft Entra ID, managed identity), run through `sh -c` at startup and before the token expires, e.g. `az account get-access-token --resource https://relay.azure.net/ --query accessToken -o tsv`. Replaces the key or token; give the relay with --endpoint or a profile'
            cand --profile 'Profile name in the config file (HYCO_PROFILE, when no flag names the relay)'
            cand --connection-string 'Connection string (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`). Prefer HYCO_CONNECTION_STRING or a profile: arguments are visible to other users'
            cand --endpoint 'Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`). Repeat it (or separate with commas) for the nodes of one relay: each connection tries them in random order, the next when one cannot be reached'
            cand --key-name 'Key name (SAS rule)'
            cand --key 'Key. Prefer a profile: arguments are visible to other users'
            cand --tls-fingerprint 'SHA-256 fingerprint of a self-signed relay certificate to trust'
            cand --log-format 'Log line format on stderr'
            cand --threads 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)'
            cand --stdio 'Bridge stdin/stdout instead (for `ssh -o ProxyCommand=''hyco connect HC/ssh --stdio''`)'
            cand -v 'More log output (repeat for more); RUST_LOG overrides'
            cand --verbose 'More log output (repeat for more); RUST_LOG overrides'
            cand -q 'Only errors'
            cand --quiet 'Only errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'hyco;up'= {
            cand --log-format 'Log line format on stderr'
            cand --threads 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)'
            cand --check 'Read the file, print each entry as the command it runs, and exit'
            cand -v 'More log output (repeat for more); RUST_LOG overrides'
            cand --verbose 'More log output (repeat for more); RUST_LOG overrides'
            cand -q 'Only errors'
            cand --quiet 'Only errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'hyco;demo'= {
            cand --to 'Where tunnelled connections go (default: a built-in echo service)'
            cand --bind 'Local port that reaches the target through the relay: `PORT` or `HOST:PORT`'
            cand --log-format 'Log line format on stderr'
            cand --threads 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)'
            cand -v 'More log output (repeat for more); RUST_LOG overrides'
            cand --verbose 'More log output (repeat for more); RUST_LOG overrides'
            cand -q 'Only errors'
            cand --quiet 'Only errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'hyco;profile'= {
            cand --log-format 'Log line format on stderr'
            cand --threads 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)'
            cand -v 'More log output (repeat for more); RUST_LOG overrides'
            cand --verbose 'More log output (repeat for more); RUST_LOG overrides'
            cand -q 'Only errors'
            cand --quiet 'Only errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Add or replace a profile. Keys and tokens are read from a file or stdin (`-`), never from the command line, so they stay out of shell history and `ps`'
            cand list 'List profiles; `*` marks the default'
            cand show 'Show a profile, keys masked'
            cand remove 'Remove a profile'
            cand default 'Make a profile the default'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'hyco;profile;add'= {
            cand --endpoint 'Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`). Repeat it (or separate with commas) for the nodes of one relay'
            cand --key-name 'Key name (SAS rule); the key comes from --key-file'
            cand --key-file 'File holding the key, or `-` for stdin'
            cand --token-file 'File holding a SAS token (instead of a key), or `-` for stdin'
            cand --connection-string-file 'File holding a connection string, or `-` for stdin'
            cand --tls-fingerprint 'SHA-256 fingerprint of a self-signed relay certificate to trust'
            cand --log-format 'Log line format on stderr'
            cand --threads 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)'
            cand --default 'Make it the default profile'
            cand -v 'More log output (repeat for more); RUST_LOG overrides'
            cand --verbose 'More log output (repeat for more); RUST_LOG overrides'
            cand -q 'Only errors'
            cand --quiet 'Only errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'hyco;profile;list'= {
            cand --log-format 'Log line format on stderr'
            cand --threads 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)'
            cand --names 'Print the names only, one a line (for shell completion)'
            cand -v 'More log output (repeat for more); RUST_LOG overrides'
            cand --verbose 'More log output (repeat for more); RUST_LOG overrides'
            cand -q 'Only errors'
            cand --quiet 'Only errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'hyco;profile;show'= {
            cand --log-format 'Log line format on stderr'
            cand --threads 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)'
            cand --show-secret 'Print keys and tokens in full'
            cand -v 'More log output (repeat for more); RUST_LOG overrides'
            cand --verbose 'More log output (repeat for more); RUST_LOG overrides'
            cand -q 'Only errors'
            cand --quiet 'Only errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'hyco;profile;remove'= {
            cand --log-format 'Log line format on stderr'
            cand --threads 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)'
            cand -v 'More log output (repeat for more); RUST_LOG overrides'
            cand --verbose 'More log output (repeat for more); RUST_LOG overrides'
            cand -q 'Only errors'
            cand --quiet 'Only errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'hyco;profile;default'= {
            cand --log-format 'Log line format on stderr'
            cand --threads 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)'
            cand -v 'More log output (repeat for more); RUST_LOG overrides'
            cand --verbose 'More log output (repeat for more); RUST_LOG overrides'
            cand -q 'Only errors'
            cand --quiet 'Only errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'hyco;profile;help'= {
            cand add 'Add or replace a profile. Keys and tokens are read from a file or stdin (`-`), never from the command line, so they stay out of shell history and `ps`'
            cand list 'List profiles; `*` marks the default'
            cand show 'Show a profile, keys masked'
            cand remove 'Remove a profile'
            cand default 'Make a profile the default'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'hyco;profile;help;add'= {
        }
        &'hyco;profile;help;list'= {
        }
        &'hyco;profile;help;show'= {
        }
        &'hyco;profile;help;remove'= {
        }
        &'hyco;profile;help;default'= {
        }
        &'hyco;profile;help;help'= {
        }
        &'hyco;token'= {
            cand --ttl 'Lifetime: seconds, or a number with s, m, h or d (`90s`, `15m`, `1h`, `7d`)'
            cand --rights 'What the token may do. `send` and `listen` sign with a `hyco serve` relay''s Send-only or Listen-only rule, derived from its root key. `key` signs with the key as it is and carries all its rule grants: with Azure, use the key of a policy that grants only what you mean to hand out'
            cand --profile 'Profile name in the config file (HYCO_PROFILE, when no flag names the relay)'
            cand --connection-string 'Connection string (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`). Prefer HYCO_CONNECTION_STRING or a profile: arguments are visible to other users'
            cand --endpoint 'Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`). Repeat it (or separate with commas) for the nodes of one relay: each connection tries them in random order, the next when one cannot be reached'
            cand --key-name 'Key name (SAS rule)'
            cand --key 'Key. Prefer a profile: arguments are visible to other users'
            cand --tls-fingerprint 'SHA-256 fingerprint of a self-signed relay certificate to trust'
            cand --log-format 'Log line format on stderr'
            cand --threads 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)'
            cand --namespace 'A token for the whole namespace (every hybrid connection), e.g. a Manage token for a relay''s status page (`--rights key` with the root key)'
            cand --as-connection-string 'Print a connection string (endpoint, token, hybrid connection) instead of the token'
            cand -v 'More log output (repeat for more); RUST_LOG overrides'
            cand --verbose 'More log output (repeat for more); RUST_LOG overrides'
            cand -q 'Only errors'
            cand --quiet 'Only errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'hyco;completions'= {
            cand --log-format 'Log line format on stderr'
            cand --threads 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)'
            cand -v 'More log output (repeat for more); RUST_LOG overrides'
            cand --verbose 'More log output (repeat for more); RUST_LOG overrides'
            cand -q 'Only errors'
            cand --quiet 'Only errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'hyco;help'= {
            cand serve 'Run a Hybrid Connections relay (Azure-compatible). SIGHUP reads --config again (rules, keys and hybrid connections), keeping everyone connected'
            cand listen 'Accept connections for a hybrid connection and bridge them to local TCP targets'
            cand connect 'Bridge local TCP or Unix-socket connections (or stdin/stdout, or SOCKS5 clients) through the relay to a listener'
            cand up 'Run a machine''s whole set of listeners and connectors from one file (`[[listen]]` and `[[connect]]` tables of their flags), each retried on its own when it fails; SIGHUP reads the file again (changed entries restart, the others keep running)'
            cand demo 'Run a relay, a listener and a connector in one process: a local port that reaches a target through the relay, with no account and no setup'
            cand profile 'Manage the profiles that hold relay endpoints and keys'
            cand token 'Mint a SAS token for one hybrid connection, to hand out instead of a key'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'hyco;help;serve'= {
        }
        &'hyco;help;listen'= {
        }
        &'hyco;help;connect'= {
        }
        &'hyco;help;up'= {
        }
        &'hyco;help;demo'= {
        }
        &'hyco;help;profile'= {
            cand add 'Add or replace a profile. Keys and tokens are read from a file or stdin (`-`), never from the command line, so they stay out of shell history and `ps`'
            cand list 'List profiles; `*` marks the default'
            cand show 'Show a profile, keys masked'
            cand remove 'Remove a profile'
            cand default 'Make a profile the default'
        }
        &'hyco;help;profile;add'= {
        }
        &'hyco;help;profile;list'= {
        }
        &'hyco;help;profile;show'= {
        }
        &'hyco;help;profile;remove'= {
        }
        &'hyco;help;profile;default'= {
        }
        &'hyco;help;token'= {
        }
        &'hyco;help;completions'= {
        }
        &'hyco;help;help'= {
        }
    ]
    $completions[$command]
}
