'use strict';
// node https-listener.js <ws-base-url> <hc> <keyName> <key>
//
// A hyco-https 1.4.5 relayed server (createRelayedServer) for HTTP mode on <hc> at
// <ws-base-url> (e.g. ws://127.0.0.1:PORT), with a token from hyco-https's createRelayToken.
// Routes (paths as the relay forwards them, /<hc> included):
//   GET|HEAD /<hc>/small   200 "small response" (text/plain), X-Listener: hyco-https
//   GET /<hc>/big?n=N      200, N bytes (byte i is i % 251), in 16 KiB res.write() calls
//                          then res.end(): over 64 KiB, hyco-https streams it on a rendezvous
//   POST /<hc>/echo        200, the request body back in one res.end(body), X-Body-Length
//   anything else          404 "no route"
//
// stdout, one event per line:
//   READY                                 control channel open (hyco-https's 'listening')
//   REQUEST <via> <method> <url> <json>   a request: via is "control" or "rendezvous" (the
//                                         socket it came on), json its headers as Node saw them
//   ERROR <reason>                        a failure; the script exits 1
//   STOPPED                               after SIGTERM/SIGINT, just before exit 0
let https;
try {
  https = require('hyco-https');
} catch (e) {
  process.stdout.write('ERROR hyco-https not installed (run interop/setup.sh): ' + e.message + '\n');
  process.exit(1);
}

function out(line) {
  process.stdout.write(line + '\n');
}

const [base, hc, keyName, key] = process.argv.slice(2);
if (!base || !hc || !keyName || key === undefined) {
  process.stderr.write('usage: node https-listener.js <ws-base-url> <hc> <keyName> <key>\n');
  process.exit(2);
}

// hyco-https's helpers build wss://{ns}:443/$hc/{path}?sb-hc-action=listen; swap the prefix.
const PLACEHOLDER = 'hyco-interop.invalid';
const made = https.createRelayListenUri(PLACEHOLDER, hc);
const prefix = 'wss://' + PLACEHOLDER + ':443';
if (!made.startsWith(prefix)) {
  out('ERROR unexpected URI from hyco-https: ' + made);
  process.exit(1);
}
const listenUri = base.replace(/\/+$/, '') + made.slice(prefix.length);
const token = https.createRelayToken(listenUri, keyName, key);

const server = https.createRelayedServer({ server: listenUri, token }, (req, res) => {
  const via = req.socket === server.controlChannel ? 'control' : 'rendezvous';
  out('REQUEST ' + via + ' ' + req.method + ' ' + req.url + ' ' + JSON.stringify(req.headers));
  const path = req.url.split('?')[0];
  const query = new URLSearchParams(req.url.split('?')[1] || '');
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (path === '/' + hc + '/small') {
      res.setHeader('X-Listener', 'hyco-https');
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end(req.method === 'HEAD' ? undefined : 'small response');
    } else if (path === '/' + hc + '/big') {
      const n = parseInt(query.get('n') || '0', 10);
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      for (let at = 0; at < n; at += 16384) {
        const piece = Buffer.alloc(Math.min(16384, n - at));
        for (let i = 0; i < piece.length; i++) piece[i] = (at + i) % 251;
        res.write(piece);
      }
      res.end();
    } else if (path === '/' + hc + '/echo' && req.method === 'POST') {
      const body = Buffer.concat(chunks);
      res.setHeader('X-Body-Length', String(body.length));
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      res.end(body);
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('no route');
    }
  });
});

let ready = false;
server.on('listening', () => {
  if (!ready) out('READY');
  ready = true;
});
server.on('error', (e) => {
  out('ERROR ' + (e && e.message ? e.message : String(e)));
  process.exit(1);
});
server.listen();

function stop() {
  out('STOPPED');
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
