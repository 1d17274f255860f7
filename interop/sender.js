'use strict';
// node sender.js <ws-base-url> <hc> <keyName> <key> <message>
//
// A hyco-ws 1.0.5 sender: relayedConnect to <hc> at <ws-base-url> (e.g. ws://127.0.0.1:PORT)
// with a token from hyco-ws's createRelayToken (sent, as hyco-ws does, in the
// ServiceBusAuthorization header). Once open it sends <message> as a text frame, then one
// binary frame, waits for two replies, closes with 1000 and exits 0.
//
// stdout, one event per line:
//   OPEN <protocol or ->          the relay answered 101 (protocol: the one it chose)
//   SENT text <payload>           payload escaped: \\ \n \r
//   SENT binary <hex>
//   RECV text <payload>
//   RECV binary <hex>
//   CLOSED <code> <reason>
//   ERROR <reason>                exit 1: e.g. "unexpected-response 404 <status text>",
//                                 "timeout", "closed before 2 replies"
//
// Environment (all optional):
//   HYCO_ID=<guid>            sb-hc-id (createRelaySendUri's id argument)
//   HYCO_TOKEN_TTL=<s>        expirationSeconds for createRelayToken (negative: expired)
//   HYCO_TOKEN_IN_QUERY=1     token as sb-hc-token (createRelaySendUri's token argument)
//                             instead of the header
//   HYCO_NO_TOKEN=1           no token at all
//   HYCO_PROTOCOLS=a,b        offer these subprotocols   } these two bypass relayedConnect
//   HYCO_HEADERS=<json obj>   extra upgrade headers      } for `new WS(uri, protocols, opts)`,
//                                                          which is what relayedConnect does
//   HYCO_BINARY_HEX=<hex>     the binary message (default 0001fe ff + UTF-8 of <message>)
//   HYCO_EXPECT=<n>           replies to wait for before closing (default 2)
//   HYCO_TIMEOUT_MS=<ms>      overall deadline (default 15000)
const { hyco, out, escapeText, errText, relayUri, envInt } = require('./common');

const [base, hc, keyName, key, message] = process.argv.slice(2);
if (!base || !hc || !keyName || key === undefined || message === undefined) {
  process.stderr.write('usage: node sender.js <ws-base-url> <hc> <keyName> <key> <message>\n');
  process.exit(2);
}
const id = process.env.HYCO_ID || null;
const ttl = envInt('HYCO_TOKEN_TTL');
const expect = envInt('HYCO_EXPECT') ?? 2;
const timeoutMs = envInt('HYCO_TIMEOUT_MS') ?? 15000;

let finished = false;
function finish(code, errorLine) {
  if (finished) return;
  finished = true;
  if (errorLine) out('ERROR ' + errorLine);
  process.exit(code);
}
setTimeout(() => finish(1, 'timeout after ' + timeoutMs + ' ms'), timeoutMs);
process.on('uncaughtException', (e) => finish(1, 'uncaught ' + errText(e)));

let uri = relayUri('connect', base, hc, null, id);
let token = process.env.HYCO_NO_TOKEN ? null : hyco.createRelayToken(uri, keyName, key, ttl);
if (token && process.env.HYCO_TOKEN_IN_QUERY) {
  uri = relayUri('connect', base, hc, token, id);
  token = null;
}

let ws;
if (process.env.HYCO_PROTOCOLS || process.env.HYCO_HEADERS) {
  const protocols = process.env.HYCO_PROTOCOLS ? process.env.HYCO_PROTOCOLS.split(',') : null;
  let headers;
  try {
    headers = JSON.parse(process.env.HYCO_HEADERS || '{}');
  } catch (e) {
    finish(2, 'HYCO_HEADERS is not JSON: ' + e.message);
  }
  if (token != null) headers.ServiceBusAuthorization = token;
  ws = new hyco(uri, protocols, { headers: headers });
} else {
  ws = hyco.relayedConnect(uri, token);
}

const binary = process.env.HYCO_BINARY_HEX !== undefined
  ? Buffer.from(process.env.HYCO_BINARY_HEX, 'hex')
  : Buffer.concat([Buffer.from([0x00, 0x01, 0xfe, 0xff]), Buffer.from(message, 'utf8')]);
let replies = 0;

ws.on('unexpected-response', (req, res) => {
  req.abort();
  finish(1, 'unexpected-response ' + res.statusCode + ' ' + (res.statusMessage || ''));
});
ws.on('error', (e) => finish(1, errText(e)));
ws.on('open', () => {
  out('OPEN ' + (ws.protocol || '-'));
  ws.send(message);
  out('SENT text ' + escapeText(message));
  ws.send(binary, { binary: true });
  out('SENT binary ' + binary.toString('hex'));
  if (expect === 0) ws.close(1000, 'done');
});
ws.on('message', (data, flags) => {
  if (flags && flags.binary) {
    out('RECV binary ' + Buffer.from(data).toString('hex'));
  } else {
    out('RECV text ' + escapeText(data));
  }
  replies += 1;
  if (replies === expect) ws.close(1000, 'done');
});
ws.on('close', (code, reason) => {
  out('CLOSED ' + code + ' ' + (reason || ''));
  if (replies >= expect) finish(0);
  else finish(1, 'closed before ' + expect + ' replies (got ' + replies + ')');
});
