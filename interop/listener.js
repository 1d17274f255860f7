'use strict';
// node listener.js <ws-base-url> <hc> <keyName> <key>
//
// A hyco-ws 1.0.5 relayed server (createRelayedServer) listening on <hc> at <ws-base-url>
// (e.g. ws://127.0.0.1:PORT), with a token from hyco-ws's createRelayToken. It echoes:
// a text message m comes back as "echo:m", a binary message comes back byte for byte.
//
// stdout, one event per line (<n> numbers accepted connections from 1):
//   READY                          control channel open (hyco-ws's 'listening'), first time
//   RELISTEN <k>                   control channel open again (k-th time; hyco-ws reconnected)
//   CONTROL_CLOSED <code> <reason> the relay closed the control channel (hyco-ws reconnects)
//   CONTROL_MSG <json>             a control message other than accept (hyco-ws ignores it)
//   RENEW <se>                     hyco-ws called the token function to send renewToken
//   ACCEPTED <n> <json>            rendezvous open; json: id, address, path, query, protocol,
//                                  connectHeaders, remoteEndpoint (from the accept message)
//   RECV <n> text <payload>        payload escaped: \\ \n \r
//   RECV <n> binary <hex>
//   CLOSED <n> <code> <reason>     rendezvous closed
//   CONN_ERROR <n> <reason>        rendezvous failed (e.g. the accept upgrade was refused)
//   ERROR <reason>                 control channel failure; the script exits 1
//   STOPPED                        after SIGTERM/SIGINT, just before exit 0
//
// Environment (all optional):
//   HYCO_ID=<guid>        sb-hc-id on the listen URI (via createRelayListenUri's id argument)
//   HYCO_TOKEN_TTL=<s>    expirationSeconds for createRelayToken (negative: already expired)
//   HYCO_RENEW_MS=<ms>    pass the token as a function, so hyco-ws sends renewToken; its
//                         fixed 1-hour renewal interval is shortened to <ms> for tests
const { hyco, moment, out, escapeText, errText, relayUri, tokenExpiry, envInt } = require('./common');

const [base, hc, keyName, key] = process.argv.slice(2);
if (!base || !hc || !keyName || key === undefined) {
  process.stderr.write('usage: node listener.js <ws-base-url> <hc> <keyName> <key>\n');
  process.exit(2);
}
const ttl = envInt('HYCO_TOKEN_TTL');
const renewMs = envInt('HYCO_RENEW_MS');
const listenUri = relayUri('listen', base, hc, null, process.env.HYCO_ID || null);

let token;
if (renewMs !== undefined) {
  // hyco-ws: `tokenRenewDuration = new moment.duration(1, 'hours')` when token is a function.
  const realDuration = moment.duration;
  moment.duration = function (n, unit) {
    if (n === 1 && unit === 'hours') return realDuration(renewMs, 'milliseconds');
    return realDuration.apply(this, arguments);
  };
  let calls = 0;
  token = function () {
    const t = hyco.createRelayToken(listenUri, keyName, key, ttl);
    calls += 1;
    if (calls > 1) out('RENEW ' + tokenExpiry(t));
    return t;
  };
} else {
  token = hyco.createRelayToken(listenUri, keyName, key, ttl);
}

let stopping = false;
function fail(reason) {
  if (stopping) return;
  stopping = true;
  out('ERROR ' + reason);
  process.exit(1);
}
// hyco-ws throws from its control-channel message handler on some inputs (bad JSON, an
// accept it wants to reject: its abortConnection refers to undefined names).
process.on('uncaughtException', (e) => fail('uncaught ' + (e && e.stack ? e.stack.split('\n')[0] : errText(e))));

// accept messages by address, to report connectHeaders etc. when the rendezvous opens.
const accepts = new Map();
let opens = 0;
let conns = 0;

// Watch each control channel hyco-ws creates (it replaces server.controlChannel on reconnect).
const watched = new WeakSet();
function watch(cc) {
  if (!cc || watched.has(cc)) return;
  watched.add(cc);
  // With this listener ws reports a non-101 answer here instead of as a bare 'error'.
  cc.on('unexpected-response', (req, res) => {
    req.abort();
    fail('unexpected-response ' + res.statusCode + ' ' + (res.statusMessage || ''));
  });
  // hyco-ws's own onmessage handler runs first (it was registered first): by the time this
  // one runs, it has already emitted 'connection' for an accept.
  cc.on('message', (data) => {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (msg && msg.accept) {
      accepts.set(msg.accept.address, msg.accept);
    } else {
      out('CONTROL_MSG ' + JSON.stringify(msg));
    }
  });
  cc.on('close', (code, reason) => {
    if (stopping) return;
    out('CONTROL_CLOSED ' + code + ' ' + (reason || ''));
    // hyco-ws's onclose has already reconnected; watch the new channel too.
    watch(server.controlChannel);
  });
}

const server = hyco.createRelayedServer({ server: listenUri, token: token });
watch(server.controlChannel);

server.on('listening', () => {
  watch(server.controlChannel);
  opens += 1;
  out(opens === 1 ? 'READY' : 'RELISTEN ' + opens);
});

server.on('error', (e) => fail(errText(e)));

server.on('connection', (ws) => {
  const n = ++conns;
  const address = ws.url;
  ws.on('open', () => {
    const acc = accepts.get(address) || {};
    accepts.delete(address);
    let path = null;
    let query = null;
    try {
      const u = new URL(address);
      path = decodeURIComponent(u.pathname.replace(/^\/\$hc\//, ''));
      query = u.search;
    } catch (e) {
      /* leave null */
    }
    out('ACCEPTED ' + n + ' ' + JSON.stringify({
      id: acc.id === undefined ? null : acc.id,
      address: address,
      path: path,
      query: query,
      protocol: ws.protocol || null,
      connectHeaders: acc.connectHeaders || null,
      remoteEndpoint: acc.remoteEndpoint === undefined ? null : acc.remoteEndpoint,
    }));
  });
  ws.on('message', (data, flags) => {
    if (flags && flags.binary) {
      out('RECV ' + n + ' binary ' + Buffer.from(data).toString('hex'));
      ws.send(data, { binary: true });
    } else {
      out('RECV ' + n + ' text ' + escapeText(data));
      ws.send('echo:' + data);
    }
  });
  ws.on('close', (code, reason) => out('CLOSED ' + n + ' ' + code + ' ' + (reason || '')));
  ws.on('error', (e) => out('CONN_ERROR ' + n + ' ' + errText(e)));
});

function stop() {
  if (stopping) return;
  stopping = true;
  const done = () => {
    out('STOPPED');
    process.exit(0);
  };
  setTimeout(done, 2000);
  try {
    server.close(() => {});
  } catch (e) {
    /* exiting anyway */
  }
  server.on('close', done);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
