# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_hyco_global_optspecs
    string join \n v/verbose q/quiet log-format= threads= h/help V/version
end

function __fish_hyco_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_hyco_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_hyco_using_subcommand
    set -l cmd (__fish_hyco_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c hyco -n "__fish_hyco_needs_command" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c hyco -n "__fish_hyco_needs_command" -l threads -d 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)' -r
complete -c hyco -n "__fish_hyco_needs_command" -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hyco -n "__fish_hyco_needs_command" -s q -l quiet -d 'Only errors'
complete -c hyco -n "__fish_hyco_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hyco -n "__fish_hyco_needs_command" -s V -l version -d 'Print version'
complete -c hyco -n "__fish_hyco_needs_command" -f -a "serve" -d 'Run a Hybrid Connections relay (Azure-compatible). SIGHUP reads --config again (rules, keys and hybrid connections), keeping everyone connected'
complete -c hyco -n "__fish_hyco_needs_command" -f -a "listen" -d 'Accept connections for a hybrid connection and bridge them to local TCP targets'
complete -c hyco -n "__fish_hyco_needs_command" -f -a "connect" -d 'Bridge local TCP or Unix-socket connections (or stdin/stdout, or SOCKS5 clients) through the relay to a listener'
complete -c hyco -n "__fish_hyco_needs_command" -f -a "up" -d 'Run a machine\'s whole set of listeners and connectors from one file (`[[listen]]` and `[[connect]]` tables of their flags), each retried on its own when it fails; SIGHUP reads the file again (changed entries restart, the others keep running)'
complete -c hyco -n "__fish_hyco_needs_command" -f -a "demo" -d 'Run a relay, a listener and a connector in one process: a local port that reaches a target through the relay, with no account and no setup'
complete -c hyco -n "__fish_hyco_needs_command" -f -a "profile" -d 'Manage the profiles that hold relay endpoints and keys'
complete -c hyco -n "__fish_hyco_needs_command" -f -a "token" -d 'Mint a SAS token for one hybrid connection, to hand out instead of a key'
complete -c hyco -n "__fish_hyco_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c hyco -n "__fish_hyco_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c hyco -n "__fish_hyco_using_subcommand serve" -l bind -d 'Address and port to listen on: `PORT` (on 127.0.0.1, this machine only) or `HOST:PORT` (`0.0.0.0:9400` for every interface)' -r
complete -c hyco -n "__fish_hyco_using_subcommand serve" -l config -d 'Relay configuration (TOML: rules, hybrid connections, limits). Without it, a throwaway relay with a generated key that creates hybrid connections on first listen' -r -F
complete -c hyco -n "__fish_hyco_using_subcommand serve" -l tls-cert -d 'TLS certificate chain (PEM); needs --tls-key' -r -F
complete -c hyco -n "__fish_hyco_using_subcommand serve" -l tls-key -d 'TLS private key (PEM)' -r -F
complete -c hyco -n "__fish_hyco_using_subcommand serve" -l public-host -d 'Host name other machines use to reach this relay, for the printed connection string and the self-signed certificate (default: the bind address, or this machine\'s host name when bound to all interfaces)' -r
complete -c hyco -n "__fish_hyco_using_subcommand serve" -l public-ports -d 'Without --config: the ports listeners may open for anyone (`hyco listen --public`), `FIRST-LAST`, or `off`. They are bound on the --bind address. With --config, `[public_ports]` in the file says' -r
complete -c hyco -n "__fish_hyco_using_subcommand serve" -l profile-name -d 'The profile to write for clients on this machine. An existing profile of that name that points at another relay is left alone (serve says so)' -r
complete -c hyco -n "__fish_hyco_using_subcommand serve" -l metrics -d 'Serve Prometheus metrics at http://HOST:PORT/metrics (plain HTTP, no auth: keep it on loopback or a private network), e.g. 127.0.0.1:9464' -r
complete -c hyco -n "__fish_hyco_using_subcommand serve" -l dashboard -d 'Serve the relay\'s status page at http://HOST:PORT/ (JSON at /api/status), e.g. 127.0.0.1:8470. Open on loopback; on any other address each request needs a Manage-rights SAS token of the namespace, or HYCO_DASHBOARD_SECRET, in Authorization' -r
complete -c hyco -n "__fish_hyco_using_subcommand serve" -l cluster -d 'Be one node of a relay of several that share listeners through this Redis (`redis://HOST:6379/0`, `rediss://` for TLS; no password in it: use `[cluster] password_file`). Overrides `[cluster] redis` in --config' -r
complete -c hyco -n "__fish_hyco_using_subcommand serve" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c hyco -n "__fish_hyco_using_subcommand serve" -l threads -d 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)' -r
complete -c hyco -n "__fish_hyco_using_subcommand serve" -l tls-self-signed -d 'Serve TLS with a self-signed certificate (kept in the data directory) and print its SHA-256 fingerprint for clients to pin'
complete -c hyco -n "__fish_hyco_using_subcommand serve" -l no-profile -d 'Do not write a profile for clients on this machine'
complete -c hyco -n "__fish_hyco_using_subcommand serve" -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hyco -n "__fish_hyco_using_subcommand serve" -s q -l quiet -d 'Only errors'
complete -c hyco -n "__fish_hyco_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hyco -n "__fish_hyco_using_subcommand serve" -s V -l version -d 'Print version'
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l to -d 'Target for accepted connections: `PORT` (on 127.0.0.1), `host:port`, a Unix socket `unix:PATH`, or `name=host:port` (`name=unix:PATH`) chosen by the sender\'s path (`hyco connect HC/name`); `udp://host:port` for a UDP service (reached by `hyco connect --bind udp:…` or a public UDP port). Repeatable. Optional with --allow' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l allow -d 'Let senders (`hyco connect HC --socks`) reach destinations this rule matches: `CIDR:PORTS`, `IP:PORTS`, `HOST:PORTS` or `*.DOMAIN:PORTS` (sub-domains only), PORTS `N`, `N-M` or `*`, IPv6 in brackets. A name rule lets the name reach what it resolves to; an address rule is checked against the resolved addresses. Repeatable; default: no dynamic destinations at all' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l connections -d 'Control channels to keep open, for availability (1-25)' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l inspect -d 'With --http: serve a request inspector at http://HOST:PORT/ (JSON at /api/requests): the last requests with their headers and bodies (credentials masked), and replay. Open on loopback; on any other address each request needs HYCO_INSPECT_SECRET in Authorization, and without it listen exits' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l inspect-requests -d 'With --inspect: how many requests the inspector keeps (at most 10000)' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l inspect-body-bytes -d 'With --inspect: bytes kept of each request and response body (at most 1048576; 0 keeps none). A request whose body was not kept whole cannot be replayed' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l max-rendezvous -d 'Rendezvous (accepted connections being opened, HTTP requests being answered) to work on at once; the relay\'s accepts beyond it are dropped' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l public -d 'Ask the relay (`hyco serve`) for a public port anyone reaches with a plain TCP or UDP client: `--public` every target on any free port, `--public PORT` the unnamed (or only) target, `--public NAME` or `--public NAME=PORT` a named one. A `udp://` target gets a UDP port. Prints `reachable at HOST:PORT`; the port comes back after a reconnect. Repeatable. Azure Relay has no public ports' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l keepalive -d 'Seconds a tunnel may stay silent before hyco pings through it, so that relays and firewalls do not drop an idle tunnel (Azure Relay drops idle connections after about 4 minutes); 0: never' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l udp-idle -d 'Seconds a UDP session from `hyco connect --bind udp:…` may go without a datagram either way before the listener ends it (a public port\'s sessions have the relay\'s)' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l proxy -d 'HTTP proxy to the relay: `http://[USER:PASS@]HOST:PORT`, or `none` to go direct whatever HTTPS_PROXY, HTTP_PROXY, ALL_PROXY or the profile\'s `proxy` say. NO_PROXY still exempts hosts. Targets are always reached directly' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l token-command -d 'Shell command that prints a JWT (Microsoft Entra ID, managed identity), run through `sh -c` at startup and before the token expires, e.g. `az account get-access-token --resource https://relay.azure.net/ --query accessToken -o tsv`. Replaces the key or token; give the relay with --endpoint or a profile' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l profile -d 'Profile name in the config file (HYCO_PROFILE, when no flag names the relay)' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l connection-string -d 'Connection string (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`). Prefer HYCO_CONNECTION_STRING or a profile: arguments are visible to other users' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l endpoint -d 'Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`). Repeat it (or separate with commas) for the nodes of one relay: each connection tries them in random order, the next when one cannot be reached' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l key-name -d 'Key name (SAS rule)' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l key -d 'Key. Prefer a profile: arguments are visible to other users' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l tls-fingerprint -d 'SHA-256 fingerprint of a self-signed relay certificate to trust' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l threads -d 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)' -r
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l http -d 'Also answer plain HTTP requests for the hybrid connection (`https://relay/HC/…`) by calling the target over HTTP/1.1, with `/HC` taken off the path. WebSocket senders keep reaching the same target. Without it, HTTP requests get 501'
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l keep-path-prefix -d 'With --http: pass the path on as the client sent it, `/HC` included'
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l azbridge -d 'Senders are azbridge (Azure Relay Bridge `-L`): read each one\'s preamble, pick the target by its port name (`--to NAME=…`; with one target, any port number), and answer it as an azbridge listener does'
complete -c hyco -n "__fish_hyco_using_subcommand listen" -l wait-for-relay -d 'When the relay cannot be reached at startup, retry with backoff instead of exiting (exit code 4): for a service that may start before the network is up. Rejected credentials and a missing hybrid connection still exit at startup (once online, the listener retries through them)'
complete -c hyco -n "__fish_hyco_using_subcommand listen" -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hyco -n "__fish_hyco_using_subcommand listen" -s q -l quiet -d 'Only errors'
complete -c hyco -n "__fish_hyco_using_subcommand listen" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hyco -n "__fish_hyco_using_subcommand listen" -s V -l version -d 'Print version'
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l target -d 'Take the whole of HC as the hybrid connection name (for names holding `/`) and use this target name' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l bind -d 'Where to accept local connections: `PORT` (on 127.0.0.1), `HOST:PORT`, a Unix socket `unix:PATH` (created; a stale socket there is replaced; removed on exit), or with `udp:` (`udp:5353`, `udp:0.0.0.0:5353`) a UDP port, each peer address a session with a tunnel of its own, to a listener\'s `udp://` target' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l bind-mode -d 'For a Unix socket (--bind or -L unix:PATH): the socket\'s permissions, in octal (default 0600: its owner only; 0660 lets its group in)' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -s L -l forward -d 'Forward a local address to a target, as ssh -L does: `LOCAL:REMOTE`, LOCAL as --bind takes it, REMOTE a target name of HC (`9000:web`, `127.0.0.1:2222:ssh`, `udp:5353:dns`), or `HC` / `HC/NAME` when no HC is given (`9000:home/web`). Repeatable: each forward runs beside the others, with its own tunnels and counters' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -s D -l socks -d 'Serve SOCKS5 here (as `ssh -D`; beside --bind and -L if given): each CONNECT reaches its destination through the listener, which allows it or not (`hyco listen --allow`). No authentication unless --socks-user: bind to loopback or a trusted network. `PORT` (on 127.0.0.1) or `HOST:PORT`' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l socks-user -d 'With --socks: clients must give this user name and the password in HYCO_SOCKS_PASSWORD (RFC 1929); those that offer no user name and password are turned away' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l prewarm -d 'With --bind and -L: tunnels to keep open ahead of need, so that a new connection does not wait for the rendezvous (0 turns this off). A hyco listener reaches the target only when a tunnel is used; with another listener this turns itself off. Default: 8, and 0 against Azure Relay (*.servicebus.windows.net and its other clouds), where it is unverified' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l keepalive -d 'Seconds a tunnel may stay silent before hyco pings through it, so that relays and firewalls do not drop an idle tunnel (Azure Relay drops idle connections after about 4 minutes); 0: never' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l azbridge-port -d 'The listener is azbridge (Azure Relay Bridge `-T`): start each tunnel with its preamble for this port name (its `-T` name, by default the target\'s port number). No prewarming' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l udp-idle -d 'For a UDP forward (udp:… with --bind or -L): seconds a session may go without a datagram either way before it ends (its peer\'s next datagram opens a new one). Default: 60' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l udp-sessions -d 'For a UDP forward (udp:… with --bind or -L): sessions (local peer addresses) at once; a new peer\'s datagrams beyond are dropped, counted and logged. Default: 1024' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l proxy -d 'HTTP proxy to the relay: `http://[USER:PASS@]HOST:PORT`, or `none` to go direct whatever HTTPS_PROXY, HTTP_PROXY, ALL_PROXY or the profile\'s `proxy` say. NO_PROXY still exempts hosts. Targets are always reached directly' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l token-command -d 'Shell command that prints a JWT (Microsoft Entra ID, managed identity), run through `sh -c` at startup and before the token expires, e.g. `az account get-access-token --resource https://relay.azure.net/ --query accessToken -o tsv`. Replaces the key or token; give the relay with --endpoint or a profile' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l profile -d 'Profile name in the config file (HYCO_PROFILE, when no flag names the relay)' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l connection-string -d 'Connection string (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`). Prefer HYCO_CONNECTION_STRING or a profile: arguments are visible to other users' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l endpoint -d 'Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`). Repeat it (or separate with commas) for the nodes of one relay: each connection tries them in random order, the next when one cannot be reached' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l key-name -d 'Key name (SAS rule)' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l key -d 'Key. Prefer a profile: arguments are visible to other users' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l tls-fingerprint -d 'SHA-256 fingerprint of a self-signed relay certificate to trust' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l threads -d 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)' -r
complete -c hyco -n "__fish_hyco_using_subcommand connect" -l stdio -d 'Bridge stdin/stdout instead (for `ssh -o ProxyCommand=\'hyco connect HC/ssh --stdio\'`)'
complete -c hyco -n "__fish_hyco_using_subcommand connect" -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hyco -n "__fish_hyco_using_subcommand connect" -s q -l quiet -d 'Only errors'
complete -c hyco -n "__fish_hyco_using_subcommand connect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hyco -n "__fish_hyco_using_subcommand connect" -s V -l version -d 'Print version'
complete -c hyco -n "__fish_hyco_using_subcommand up" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c hyco -n "__fish_hyco_using_subcommand up" -l threads -d 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)' -r
complete -c hyco -n "__fish_hyco_using_subcommand up" -l check -d 'Read the file, print each entry as the command it runs, and exit'
complete -c hyco -n "__fish_hyco_using_subcommand up" -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hyco -n "__fish_hyco_using_subcommand up" -s q -l quiet -d 'Only errors'
complete -c hyco -n "__fish_hyco_using_subcommand up" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hyco -n "__fish_hyco_using_subcommand up" -s V -l version -d 'Print version'
complete -c hyco -n "__fish_hyco_using_subcommand demo" -l to -d 'Where tunnelled connections go (default: a built-in echo service)' -r
complete -c hyco -n "__fish_hyco_using_subcommand demo" -l bind -d 'Local port that reaches the target through the relay: `PORT` or `HOST:PORT`' -r
complete -c hyco -n "__fish_hyco_using_subcommand demo" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c hyco -n "__fish_hyco_using_subcommand demo" -l threads -d 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)' -r
complete -c hyco -n "__fish_hyco_using_subcommand demo" -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hyco -n "__fish_hyco_using_subcommand demo" -s q -l quiet -d 'Only errors'
complete -c hyco -n "__fish_hyco_using_subcommand demo" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hyco -n "__fish_hyco_using_subcommand demo" -s V -l version -d 'Print version'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and not __fish_seen_subcommand_from add list show remove default help" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c hyco -n "__fish_hyco_using_subcommand profile; and not __fish_seen_subcommand_from add list show remove default help" -l threads -d 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)' -r
complete -c hyco -n "__fish_hyco_using_subcommand profile; and not __fish_seen_subcommand_from add list show remove default help" -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and not __fish_seen_subcommand_from add list show remove default help" -s q -l quiet -d 'Only errors'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and not __fish_seen_subcommand_from add list show remove default help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and not __fish_seen_subcommand_from add list show remove default help" -s V -l version -d 'Print version'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and not __fish_seen_subcommand_from add list show remove default help" -f -a "add" -d 'Add or replace a profile. Keys and tokens are read from a file or stdin (`-`), never from the command line, so they stay out of shell history and `ps`'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and not __fish_seen_subcommand_from add list show remove default help" -f -a "list" -d 'List profiles; `*` marks the default'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and not __fish_seen_subcommand_from add list show remove default help" -f -a "show" -d 'Show a profile, keys masked'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and not __fish_seen_subcommand_from add list show remove default help" -f -a "remove" -d 'Remove a profile'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and not __fish_seen_subcommand_from add list show remove default help" -f -a "default" -d 'Make a profile the default'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and not __fish_seen_subcommand_from add list show remove default help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from add" -l endpoint -d 'Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`). Repeat it (or separate with commas) for the nodes of one relay' -r
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from add" -l key-name -d 'Key name (SAS rule); the key comes from --key-file' -r
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from add" -l key-file -d 'File holding the key, or `-` for stdin' -r -F
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from add" -l token-file -d 'File holding a SAS token (instead of a key), or `-` for stdin' -r -F
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from add" -l connection-string-file -d 'File holding a connection string, or `-` for stdin' -r -F
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from add" -l tls-fingerprint -d 'SHA-256 fingerprint of a self-signed relay certificate to trust' -r
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from add" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from add" -l threads -d 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)' -r
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from add" -l default -d 'Make it the default profile'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from add" -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Only errors'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from list" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from list" -l threads -d 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)' -r
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from list" -l names -d 'Print the names only, one a line (for shell completion)'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Only errors'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from show" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from show" -l threads -d 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)' -r
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from show" -l show-secret -d 'Print keys and tokens in full'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from show" -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Only errors'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from remove" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from remove" -l threads -d 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)' -r
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from remove" -s q -l quiet -d 'Only errors'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from default" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from default" -l threads -d 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)' -r
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from default" -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from default" -s q -l quiet -d 'Only errors'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from default" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from default" -s V -l version -d 'Print version'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add or replace a profile. Keys and tokens are read from a file or stdin (`-`), never from the command line, so they stay out of shell history and `ps`'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "list" -d 'List profiles; `*` marks the default'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show a profile, keys masked'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove a profile'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "default" -d 'Make a profile the default'
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c hyco -n "__fish_hyco_using_subcommand token" -l ttl -d 'Lifetime: seconds, or a number with s, m, h or d (`90s`, `15m`, `1h`, `7d`)' -r
complete -c hyco -n "__fish_hyco_using_subcommand token" -l rights -d 'What the token may do. `send` and `listen` sign with a `hyco serve` relay\'s Send-only or Listen-only rule, derived from its root key. `key` signs with the key as it is and carries all its rule grants: with Azure, use the key of a policy that grants only what you mean to hand out' -r -f -a "send\t'Send only: a `hyco serve` relay\'s derived `hyco-send` rule'
listen\t'Listen only: a `hyco serve` relay\'s derived `hyco-listen` rule'
key\t'Whatever the signing key\'s own rule grants (a relay\'s root key: everything; an Azure policy\'s key: that policy\'s rights)'"
complete -c hyco -n "__fish_hyco_using_subcommand token" -l profile -d 'Profile name in the config file (HYCO_PROFILE, when no flag names the relay)' -r
complete -c hyco -n "__fish_hyco_using_subcommand token" -l connection-string -d 'Connection string (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`). Prefer HYCO_CONNECTION_STRING or a profile: arguments are visible to other users' -r
complete -c hyco -n "__fish_hyco_using_subcommand token" -l endpoint -d 'Relay endpoint (`sb://ns.servicebus.windows.net`, `ws://host:port`, `wss://host:port`). Repeat it (or separate with commas) for the nodes of one relay: each connection tries them in random order, the next when one cannot be reached' -r
complete -c hyco -n "__fish_hyco_using_subcommand token" -l key-name -d 'Key name (SAS rule)' -r
complete -c hyco -n "__fish_hyco_using_subcommand token" -l key -d 'Key. Prefer a profile: arguments are visible to other users' -r
complete -c hyco -n "__fish_hyco_using_subcommand token" -l tls-fingerprint -d 'SHA-256 fingerprint of a self-signed relay certificate to trust' -r
complete -c hyco -n "__fish_hyco_using_subcommand token" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c hyco -n "__fish_hyco_using_subcommand token" -l threads -d 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)' -r
complete -c hyco -n "__fish_hyco_using_subcommand token" -l namespace -d 'A token for the whole namespace (every hybrid connection), e.g. a Manage token for a relay\'s status page (`--rights key` with the root key)'
complete -c hyco -n "__fish_hyco_using_subcommand token" -l as-connection-string -d 'Print a connection string (endpoint, token, hybrid connection) instead of the token'
complete -c hyco -n "__fish_hyco_using_subcommand token" -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hyco -n "__fish_hyco_using_subcommand token" -s q -l quiet -d 'Only errors'
complete -c hyco -n "__fish_hyco_using_subcommand token" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hyco -n "__fish_hyco_using_subcommand token" -s V -l version -d 'Print version'
complete -c hyco -n "__fish_hyco_using_subcommand completions" -l log-format -d 'Log line format on stderr' -r -f -a "text\t''
json\t''"
complete -c hyco -n "__fish_hyco_using_subcommand completions" -l threads -d 'Worker threads. Default: one per core for `serve` and `demo`, one for the rest (a tunnel needs little CPU, and one thread wakes faster than several)' -r
complete -c hyco -n "__fish_hyco_using_subcommand completions" -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hyco -n "__fish_hyco_using_subcommand completions" -s q -l quiet -d 'Only errors'
complete -c hyco -n "__fish_hyco_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hyco -n "__fish_hyco_using_subcommand completions" -s V -l version -d 'Print version'
complete -c hyco -n "__fish_hyco_using_subcommand help; and not __fish_seen_subcommand_from serve listen connect up demo profile token completions help" -f -a "serve" -d 'Run a Hybrid Connections relay (Azure-compatible). SIGHUP reads --config again (rules, keys and hybrid connections), keeping everyone connected'
complete -c hyco -n "__fish_hyco_using_subcommand help; and not __fish_seen_subcommand_from serve listen connect up demo profile token completions help" -f -a "listen" -d 'Accept connections for a hybrid connection and bridge them to local TCP targets'
complete -c hyco -n "__fish_hyco_using_subcommand help; and not __fish_seen_subcommand_from serve listen connect up demo profile token completions help" -f -a "connect" -d 'Bridge local TCP or Unix-socket connections (or stdin/stdout, or SOCKS5 clients) through the relay to a listener'
complete -c hyco -n "__fish_hyco_using_subcommand help; and not __fish_seen_subcommand_from serve listen connect up demo profile token completions help" -f -a "up" -d 'Run a machine\'s whole set of listeners and connectors from one file (`[[listen]]` and `[[connect]]` tables of their flags), each retried on its own when it fails; SIGHUP reads the file again (changed entries restart, the others keep running)'
complete -c hyco -n "__fish_hyco_using_subcommand help; and not __fish_seen_subcommand_from serve listen connect up demo profile token completions help" -f -a "demo" -d 'Run a relay, a listener and a connector in one process: a local port that reaches a target through the relay, with no account and no setup'
complete -c hyco -n "__fish_hyco_using_subcommand help; and not __fish_seen_subcommand_from serve listen connect up demo profile token completions help" -f -a "profile" -d 'Manage the profiles that hold relay endpoints and keys'
complete -c hyco -n "__fish_hyco_using_subcommand help; and not __fish_seen_subcommand_from serve listen connect up demo profile token completions help" -f -a "token" -d 'Mint a SAS token for one hybrid connection, to hand out instead of a key'
complete -c hyco -n "__fish_hyco_using_subcommand help; and not __fish_seen_subcommand_from serve listen connect up demo profile token completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c hyco -n "__fish_hyco_using_subcommand help; and not __fish_seen_subcommand_from serve listen connect up demo profile token completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c hyco -n "__fish_hyco_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "add" -d 'Add or replace a profile. Keys and tokens are read from a file or stdin (`-`), never from the command line, so they stay out of shell history and `ps`'
complete -c hyco -n "__fish_hyco_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "list" -d 'List profiles; `*` marks the default'
complete -c hyco -n "__fish_hyco_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "show" -d 'Show a profile, keys masked'
complete -c hyco -n "__fish_hyco_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "remove" -d 'Remove a profile'
complete -c hyco -n "__fish_hyco_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "default" -d 'Make a profile the default'
complete -c hyco -l profile -r -f -a "(hyco profile list --names 2>/dev/null)"
complete -c hyco -n "__fish_hyco_using_subcommand profile; and __fish_seen_subcommand_from show default remove" -f -a "(hyco profile list --names 2>/dev/null)"
