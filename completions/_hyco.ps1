
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'hyco' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'hyco'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'hyco' {
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run a Hybrid Connections relay (Azure-compatible). SIGHUP reads --config again (rules, keys and hybrid connections), keeping everyone connected')
            [CompletionResult]::new('listen', 'listen', [CompletionResultType]::ParameterValue, 'Accept connections for a hybrid connection and bridge them to local TCP targets')
            [CompletionResult]::new('connect', 'connect', [CompletionResultType]::ParameterValue, 'Bridge local TCP or Unix-socket connections (or stdin/stdout, or SOCKS5 clients) through the relay to a listener')
            [CompletionResult]::new('up', 'up', [CompletionResultType]::ParameterValue, 'Run a machine''s whole set of listeners and connectors from one file (`[[listen]]` and `[[connect]]` tables of their flags), each retried on its own when it fails; SIGHUP reads the file again (changed entries restart, the others keep running)')
            [CompletionResult]::new('demo', 'demo', [CompletionResultType]::ParameterValue, 'Run a relay, a listener and a connector in one process: a local port that reaches a target through the relay, with no account and no setup')
            [CompletionResult]::new('profile', 'profile', [CompletionResultType]::ParameterValue, 'Manage the profiles that hold relay endpoints and keys')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'Mint a SAS token for one hybrid connection, to hand out instead of a key')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'hyco;serve' {
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Address and port to listen on: `PORT` (on 127.0.0.1, this machine only) or `HOST:PORT` (`0.0.0.0:9400` for every interface)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Relay configuration (TOML: rules, hybrid connections, limits). Without it, a throwaway relay with a generated key that creates hybrid connections on first listen')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'TLS certificate chain (PEM); needs --tls-key')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'TLS private key (PEM)')
            [CompletionResult]::new('--public-host', '--public-host', [CompletionResultType]::ParameterName, 'Host name other machines use to reach this relay, for the printed connection string and the self-signed certificate (default: the bind address, or this machine''s host name when bound to all interfaces)')
            [CompletionResult]::new('--public-ports', '--public-ports', [CompletionResultType]::ParameterName, 'Without --config: the ports listeners may open for anyone (`hyco listen --public`), `FIRST-LAST`, or `off`. They are bound on the --bind address. With --config, `[public_ports]` in the file says')
            [CompletionResult]::new('--profile-name', '--profile-name', [CompletionResultType]::ParameterName, 'The profile to write for clients on this machine. An existing profile of that name that points at another relay is left alone (serve says so)')
            [CompletionResult]::new('--metrics', '--metrics', [CompletionResultType]::ParameterName, 'Serve Prometheus metrics at http://HOST:PORT/metrics (plain HTTP, no auth: keep it on loopback or a private network), e.g. 127.0.0.1:9464')
            [CompletionResult]::new('--dashboard', '--dashboard', [CompletionResultType]::ParameterName, 'Serve the relay''s status page at http://HOST:PORT/ (JSON at /api/status), e.g. 127.0.0.1:8470. Open on loopback; on any other address each request needs a Manage-rights SAS token of the namespace, or HYCO_DASHBOARD_SECRET, in Authorization')
            [CompletionResult]::new('--cluster', '--cluster', [CompletionResultType]::ParameterName, 'Be one node of a relay of several that share listeners through this Redis (`redis://HOST:6379/0`, `rediss://` for TLS; no password in it: use `[cluster] password_file`). Overrides `[cluster] redis` in --config')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)')
            [CompletionResult]::new('--tls-self-signed', '--tls-self-signed', [CompletionResultType]::ParameterName, 'Serve TLS with a self-signed certificate (kept in the data directory) and print its SHA-256 fingerprint for clients to pin')
            [CompletionResult]::new('--no-profile', '--no-profile', [CompletionResultType]::ParameterName, 'Do not write a profile for clients on this machine')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'hyco;listen' {
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'Target for accepted connections: `PORT` (on 127.0.0.1), `host:port`, a Unix socket `unix:PATH`, or `name=host:port` (`name=unix:PATH`) chosen by the sender''s path (`hyco connect HC/name`); `udp://host:port` for a UDP service (reached by `hyco connect --bind udp:…` or a public UDP port). Repeatable. Optional with --allow')
            [CompletionResult]::new('--allow', '--allow', [CompletionResultType]::ParameterName, 'Let senders (`hyco connect HC --socks`) reach destinations this rule matches: `CIDR:PORTS`, `IP:PORTS`, `HOST:PORTS` or `*.DOMAIN:PORTS` (sub-domains only), PORTS `N`, `N-M` or `*`, IPv6 in brackets. A name rule lets the name reach what it resolves to; an address rule is checked against the resolved addresses. Repeatable; default: no dynamic destinations at all')
            [CompletionResult]::new('--connections', '--connections', [CompletionResultType]::ParameterName, 'Control channels to keep open, for availability (1-25)')
            [CompletionResult]::new('--inspect', '--inspect', [CompletionResultType]::ParameterName, 'With --http: serve a request inspector at http://HOST:PORT/ (JSON at /api/requests): the last requests with their headers and bodies (credentials masked), and replay. Open on loopback; on any other address each request needs HYCO_INSPECT_SECRET in Authorization, and without it listen exits')
            [CompletionResult]::new('--inspect-requests', '--inspect-requests', [CompletionResultType]::ParameterName, 'With --inspect: how many requests the inspector keeps (at most 10000)')
            [CompletionResult]::new('--inspect-body-bytes', '--inspect-body-bytes', [CompletionResultType]::ParameterName, 'With --inspect: bytes kept of each request and response body (at most 1048576; 0 keeps none). A request whose body was not kept whole cannot be replayed')
            [CompletionResult]::new('--max-rendezvous', '--max-rendezvous', [CompletionResultType]::ParameterName, 'Rendezvous (accepted connections being opened, HTTP requests being answered) to work on at once; the relay''s accepts beyond it are dropped')
            [CompletionResult]::new('--public', '--public', [CompletionResultType]::ParameterName, 'Ask the relay (`hyco serve`) for a public port anyone reaches with a plain TCP or UDP client: `--public` every target on any free port, `--public PORT` the unnamed (or only) target, `--public NAME` or `--public NAME=PORT` a named one. A `udp://` target gets a UDP port. Prints `reachable at HOST:PORT`; the port comes back after a reconnect. Repeatable. Azure Relay has no public ports')
            [CompletionResult]::new('--keepalive', '--keepalive', [CompletionResultType]::ParameterName, 'Seconds a tunnel may stay silent before hyco pings through it, so that relays and firewalls do not drop an idle tunnel (Azure Relay drops idle connections after about 4 minutes); 0: never')
            [CompletionResult]::new('--udp-idle', '--udp-idle', [CompletionResultType]::ParameterName, 'Seconds a UDP session from `hyco connect --bind udp:…` may go without a datagram either way before the listener ends it (a public port''s sessions have the relay''s)')
            [CompletionResult]::new('--proxy', '--proxy', [CompletionResultType]::ParameterName, 'HTTP proxy to the relay: `http://[USER:PASS@]HOST:PORT`, or `none` to go direct whatever HTTPS_PROXY, HTTP_PROXY, ALL_PROXY or the profile''s `proxy` say. NO_PROXY still exempts hosts. Targets are always reached directly')
            [CompletionResult]::new('--token-command', '--token-command', [CompletionResultType]::ParameterName, 'Shell command that prints a JWT (Microsoft Entra ID, managed identity), run through `sh -c` at startup and before the token expires, e.g. `az account get-access-token --resource https://relay.azure.net/ --query accessToken -o tsv`. Replaces the key or token; give the relay with --endpoint or a profile')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile name in the config file (HYCO_PROFILE, when no flag names the relay)')
            [CompletionResult]::new('--connection-string', '--connection-string', [CompletionResultType]::ParameterName, 'Connection string (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`). Prefer HYCO_CONNECTION_STRING or a profile: arguments are visible to other users')
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`). Repeat it (or separate with commas) for the nodes of one relay: each connection tries them in random order, the next when one cannot be reached')
            [CompletionResult]::new('--key-name', '--key-name', [CompletionResultType]::ParameterName, 'Key name (SAS rule)')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'Key. Prefer a profile: arguments are visible to other users')
            [CompletionResult]::new('--tls-fingerprint', '--tls-fingerprint', [CompletionResultType]::ParameterName, 'SHA-256 fingerprint of a self-signed relay certificate to trust')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)')
            [CompletionResult]::new('--http', '--http', [CompletionResultType]::ParameterName, 'Also answer plain HTTP requests for the hybrid connection (`https://relay/HC/…`) by calling the target over HTTP/1.1, with `/HC` taken off the path. WebSocket senders keep reaching the same target. Without it, HTTP requests get 501')
            [CompletionResult]::new('--keep-path-prefix', '--keep-path-prefix', [CompletionResultType]::ParameterName, 'With --http: pass the path on as the client sent it, `/HC` included')
            [CompletionResult]::new('--azbridge', '--azbridge', [CompletionResultType]::ParameterName, 'Senders are azbridge (Azure Relay Bridge `-L`): read each one''s preamble, pick the target by its port name (`--to NAME=…`; with one target, any port number), and answer it as an azbridge listener does')
            [CompletionResult]::new('--wait-for-relay', '--wait-for-relay', [CompletionResultType]::ParameterName, 'When the relay cannot be reached at startup, retry with backoff instead of exiting (exit code 4): for a service that may start before the network is up. Rejected credentials and a missing hybrid connection still exit at startup (once online, the listener retries through them)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'hyco;connect' {
            [CompletionResult]::new('--target', '--target', [CompletionResultType]::ParameterName, 'Take the whole of HC as the hybrid connection name (for names holding `/`) and use this target name')
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Where to accept local connections: `PORT` (on 127.0.0.1), `HOST:PORT`, a Unix socket `unix:PATH` (created; a stale socket there is replaced; removed on exit), or with `udp:` (`udp:5353`, `udp:0.0.0.0:5353`) a UDP port, each peer address a session with a tunnel of its own, to a listener''s `udp://` target')
            [CompletionResult]::new('--bind-mode', '--bind-mode', [CompletionResultType]::ParameterName, 'For a Unix socket (--bind or -L unix:PATH): the socket''s permissions, in octal (default 0600: its owner only; 0660 lets its group in)')
            [CompletionResult]::new('-L', '-L ', [CompletionResultType]::ParameterName, 'Forward a local address to a target, as ssh -L does: `LOCAL:REMOTE`, LOCAL as --bind takes it, REMOTE a target name of HC (`9000:web`, `127.0.0.1:2222:ssh`, `udp:5353:dns`), or `HC` / `HC/NAME` when no HC is given (`9000:home/web`). Repeatable: each forward runs beside the others, with its own tunnels and counters')
            [CompletionResult]::new('--forward', '--forward', [CompletionResultType]::ParameterName, 'Forward a local address to a target, as ssh -L does: `LOCAL:REMOTE`, LOCAL as --bind takes it, REMOTE a target name of HC (`9000:web`, `127.0.0.1:2222:ssh`, `udp:5353:dns`), or `HC` / `HC/NAME` when no HC is given (`9000:home/web`). Repeatable: each forward runs beside the others, with its own tunnels and counters')
            [CompletionResult]::new('-D', '-D ', [CompletionResultType]::ParameterName, 'Serve SOCKS5 here (as `ssh -D`; beside --bind and -L if given): each CONNECT reaches its destination through the listener, which allows it or not (`hyco listen --allow`). No authentication unless --socks-user: bind to loopback or a trusted network. `PORT` (on 127.0.0.1) or `HOST:PORT`')
            [CompletionResult]::new('--socks', '--socks', [CompletionResultType]::ParameterName, 'Serve SOCKS5 here (as `ssh -D`; beside --bind and -L if given): each CONNECT reaches its destination through the listener, which allows it or not (`hyco listen --allow`). No authentication unless --socks-user: bind to loopback or a trusted network. `PORT` (on 127.0.0.1) or `HOST:PORT`')
            [CompletionResult]::new('--socks-user', '--socks-user', [CompletionResultType]::ParameterName, 'With --socks: clients must give this user name and the password in HYCO_SOCKS_PASSWORD (RFC 1929); those that offer no user name and password are turned away')
            [CompletionResult]::new('--prewarm', '--prewarm', [CompletionResultType]::ParameterName, 'With --bind and -L: tunnels to keep open ahead of need, so that a new connection does not wait for the rendezvous (0 turns this off). A hyco listener reaches the target only when a tunnel is used; with another listener this turns itself off. Default: 8, and 0 against Azure Relay (*.servicebus.windows.net and its other clouds), where it is unverified')
            [CompletionResult]::new('--keepalive', '--keepalive', [CompletionResultType]::ParameterName, 'Seconds a tunnel may stay silent before hyco pings through it, so that relays and firewalls do not drop an idle tunnel (Azure Relay drops idle connections after about 4 minutes); 0: never')
            [CompletionResult]::new('--azbridge-port', '--azbridge-port', [CompletionResultType]::ParameterName, 'The listener is azbridge (Azure Relay Bridge `-T`): start each tunnel with its preamble for this port name (its `-T` name, by default the target''s port number). No prewarming')
            [CompletionResult]::new('--udp-idle', '--udp-idle', [CompletionResultType]::ParameterName, 'For a UDP forward (udp:… with --bind or -L): seconds a session may go without a datagram either way before it ends (its peer''s next datagram opens a new one). Default: 60')
            [CompletionResult]::new('--udp-sessions', '--udp-sessions', [CompletionResultType]::ParameterName, 'For a UDP forward (udp:… with --bind or -L): sessions (local peer addresses) at once; a new peer''s datagrams beyond are dropped, counted and logged. Default: 1024')
            [CompletionResult]::new('--proxy', '--proxy', [CompletionResultType]::ParameterName, 'HTTP proxy to the relay: `http://[USER:PASS@]HOST:PORT`, or `none` to go direct whatever HTTPS_PROXY, HTTP_PROXY, ALL_PROXY or the profile''s `proxy` say. NO_PROXY still exempts hosts. Targets are always reached directly')
            [CompletionResult]::new('--token-command', '--token-command', [CompletionResultType]::ParameterName, 'Shell command that prints a JWT (Microsoft Entra ID, managed identity), run through `sh -c` at startup and before the token expires, e.g. `az account get-access-token --resource https://relay.azure.net/ --query accessToken -o tsv`. Replaces the key or token; give the relay with --endpoint or a profile')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile name in the config file (HYCO_PROFILE, when no flag names the relay)')
            [CompletionResult]::new('--connection-string', '--connection-string', [CompletionResultType]::ParameterName, 'Connection string (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`). Prefer HYCO_CONNECTION_STRING or a profile: arguments are visible to other users')
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`). Repeat it (or separate with commas) for the nodes of one relay: each connection tries them in random order, the next when one cannot be reached')
            [CompletionResult]::new('--key-name', '--key-name', [CompletionResultType]::ParameterName, 'Key name (SAS rule)')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'Key. Prefer a profile: arguments are visible to other users')
            [CompletionResult]::new('--tls-fingerprint', '--tls-fingerprint', [CompletionResultType]::ParameterName, 'SHA-256 fingerprint of a self-signed relay certificate to trust')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)')
            [CompletionResult]::new('--stdio', '--stdio', [CompletionResultType]::ParameterName, 'Bridge stdin/stdout instead (for `ssh -o ProxyCommand=''hyco connect HC/ssh --stdio''`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'hyco;up' {
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)')
            [CompletionResult]::new('--check', '--check', [CompletionResultType]::ParameterName, 'Read the file, print each entry as the command it runs, and exit')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'hyco;demo' {
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'Where tunnelled connections go (default: a built-in echo service)')
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Local port that reaches the target through the relay: `PORT` or `HOST:PORT`')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'hyco;profile' {
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add or replace a profile. Keys and tokens are read from a file or stdin (`-`), never from the command line, so they stay out of shell history and `ps`')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List profiles; `*` marks the default')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a profile, keys masked')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a profile')
            [CompletionResult]::new('default', 'default', [CompletionResultType]::ParameterValue, 'Make a profile the default')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'hyco;profile;add' {
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`). Repeat it (or separate with commas) for the nodes of one relay')
            [CompletionResult]::new('--key-name', '--key-name', [CompletionResultType]::ParameterName, 'Key name (SAS rule); the key comes from --key-file')
            [CompletionResult]::new('--key-file', '--key-file', [CompletionResultType]::ParameterName, 'File holding the key, or `-` for stdin')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a SAS token (instead of a key), or `-` for stdin')
            [CompletionResult]::new('--connection-string-file', '--connection-string-file', [CompletionResultType]::ParameterName, 'File holding a connection string, or `-` for stdin')
            [CompletionResult]::new('--tls-fingerprint', '--tls-fingerprint', [CompletionResultType]::ParameterName, 'SHA-256 fingerprint of a self-signed relay certificate to trust')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)')
            [CompletionResult]::new('--default', '--default', [CompletionResultType]::ParameterName, 'Make it the default profile')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'hyco;profile;list' {
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)')
            [CompletionResult]::new('--names', '--names', [CompletionResultType]::ParameterName, 'Print the names only, one a line (for shell completion)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'hyco;profile;show' {
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)')
            [CompletionResult]::new('--show-secret', '--show-secret', [CompletionResultType]::ParameterName, 'Print keys and tokens in full')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'hyco;profile;remove' {
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'hyco;profile;default' {
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'hyco;profile;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add or replace a profile. Keys and tokens are read from a file or stdin (`-`), never from the command line, so they stay out of shell history and `ps`')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List profiles; `*` marks the default')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a profile, keys masked')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a profile')
            [CompletionResult]::new('default', 'default', [CompletionResultType]::ParameterValue, 'Make a profile the default')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'hyco;profile;help;add' {
            break
        }
        'hyco;profile;help;list' {
            break
        }
        'hyco;profile;help;show' {
            break
        }
        'hyco;profile;help;remove' {
            break
        }
        'hyco;profile;help;default' {
            break
        }
        'hyco;profile;help;help' {
            break
        }
        'hyco;token' {
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Lifetime: seconds, or a number with s, m, h or d (`90s`, `15m`, `1h`, `7d`)')
            [CompletionResult]::new('--rights', '--rights', [CompletionResultType]::ParameterName, 'What the token may do. `send` and `listen` sign with a `hyco serve` relay''s Send-only or Listen-only rule, derived from its root key. `key` signs with the key as it is and carries all its rule grants: with Azure, use the key of a policy that grants only what you mean to hand out')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile name in the config file (HYCO_PROFILE, when no flag names the relay)')
            [CompletionResult]::new('--connection-string', '--connection-string', [CompletionResultType]::ParameterName, 'Connection string (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`). Prefer HYCO_CONNECTION_STRING or a profile: arguments are visible to other users')
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`). Repeat it (or separate with commas) for the nodes of one relay: each connection tries them in random order, the next when one cannot be reached')
            [CompletionResult]::new('--key-name', '--key-name', [CompletionResultType]::ParameterName, 'Key name (SAS rule)')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'Key. Prefer a profile: arguments are visible to other users')
            [CompletionResult]::new('--tls-fingerprint', '--tls-fingerprint', [CompletionResultType]::ParameterName, 'SHA-256 fingerprint of a self-signed relay certificate to trust')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)')
            [CompletionResult]::new('--namespace', '--namespace', [CompletionResultType]::ParameterName, 'A token for the whole namespace (every hybrid connection), e.g. a Manage token for a relay''s status page (`--rights key` with the root key)')
            [CompletionResult]::new('--as-connection-string', '--as-connection-string', [CompletionResultType]::ParameterName, 'Print a connection string (endpoint, token, hybrid connection) instead of the token')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'hyco;completions' {
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format on stderr')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (repeat for more); RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'hyco;help' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run a Hybrid Connections relay (Azure-compatible). SIGHUP reads --config again (rules, keys and hybrid connections), keeping everyone connected')
            [CompletionResult]::new('listen', 'listen', [CompletionResultType]::ParameterValue, 'Accept connections for a hybrid connection and bridge them to local TCP targets')
            [CompletionResult]::new('connect', 'connect', [CompletionResultType]::ParameterValue, 'Bridge local TCP or Unix-socket connections (or stdin/stdout, or SOCKS5 clients) through the relay to a listener')
            [CompletionResult]::new('up', 'up', [CompletionResultType]::ParameterValue, 'Run a machine''s whole set of listeners and connectors from one file (`[[listen]]` and `[[connect]]` tables of their flags), each retried on its own when it fails; SIGHUP reads the file again (changed entries restart, the others keep running)')
            [CompletionResult]::new('demo', 'demo', [CompletionResultType]::ParameterValue, 'Run a relay, a listener and a connector in one process: a local port that reaches a target through the relay, with no account and no setup')
            [CompletionResult]::new('profile', 'profile', [CompletionResultType]::ParameterValue, 'Manage the profiles that hold relay endpoints and keys')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'Mint a SAS token for one hybrid connection, to hand out instead of a key')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'hyco;help;serve' {
            break
        }
        'hyco;help;listen' {
            break
        }
        'hyco;help;connect' {
            break
        }
        'hyco;help;up' {
            break
        }
        'hyco;help;demo' {
            break
        }
        'hyco;help;profile' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add or replace a profile. Keys and tokens are read from a file or stdin (`-`), never from the command line, so they stay out of shell history and `ps`')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List profiles; `*` marks the default')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a profile, keys masked')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a profile')
            [CompletionResult]::new('default', 'default', [CompletionResultType]::ParameterValue, 'Make a profile the default')
            break
        }
        'hyco;help;profile;add' {
            break
        }
        'hyco;help;profile;list' {
            break
        }
        'hyco;help;profile;show' {
            break
        }
        'hyco;help;profile;remove' {
            break
        }
        'hyco;help;profile;default' {
            break
        }
        'hyco;help;token' {
            break
        }
        'hyco;help;completions' {
            break
        }
        'hyco;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
