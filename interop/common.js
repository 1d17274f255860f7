'use strict';
// Shared helpers for the hyco-ws interop scripts. Everything protocol-related is left to
// hyco-ws 1.0.5 itself; this file only adapts its wss://host:443 URI helpers to a local
// base URL and prints machine-readable lines.

let hyco;
try {
  hyco = require('hyco-ws');
} catch (e) {
  process.stdout.write('ERROR hyco-ws not installed (run interop/setup.sh): ' + e.message + '\n');
  process.exit(1);
}
const moment = require('moment');

// hyco-ws and these scripts must share one moment instance, or the clock fakes below miss.
if (require.resolve('moment') !== require.resolve('moment', { paths: [require.resolve('hyco-ws')] })) {
  process.stdout.write('ERROR hyco-ws resolves a different moment than the harness\n');
  process.exit(1);
}

/** Print one line to stdout (synchronous for pipes and files on Linux). */
function out(line) {
  process.stdout.write(line + '\n');
}

/** Text payloads on one line: backslash, LF and CR are escaped as \\, \n, \r. */
function escapeText(s) {
  return String(s).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}

function errText(e) {
  if (e instanceof Error) return e.message;
  return typeof e === 'string' ? e : JSON.stringify(e);
}

const PLACEHOLDER = 'hyco-interop.invalid';

/**
 * Build a listen/connect URI with hyco-ws's own createRelayListenUri/createRelaySendUri,
 * then swap their fixed `wss://{ns}:443` prefix for `base` (e.g. ws://127.0.0.1:PORT).
 * `hc` goes in as hyco-ws's `path`, unencoded, so "hc/suffix?app=1" works as it does there.
 */
function relayUri(action, base, hc, token, id) {
  const fn = action === 'listen' ? hyco.createRelayListenUri : hyco.createRelaySendUri;
  const uri = fn(PLACEHOLDER, hc, token == null ? null : token, id == null ? null : id);
  const prefix = 'wss://' + PLACEHOLDER + ':443';
  if (!uri.startsWith(prefix)) throw new Error('unexpected URI from hyco-ws: ' + uri);
  return base.replace(/\/+$/, '') + uri.slice(prefix.length);
}

/**
 * createRelayToken with an exact expiry: hyco-ws computes se = moment().add(ttl, 's').unix(),
 * so moment's clock (moment.now, public API) is pinned to se - 3600 s for the one call.
 */
function tokenWithExpiry(uri, keyName, key, se) {
  const realNow = moment.now;
  moment.now = () => (se - 3600) * 1000;
  try {
    return hyco.createRelayToken(uri, keyName, key, 3600);
  } finally {
    moment.now = realNow;
  }
}

/** The `se` field of a token, as a number. */
function tokenExpiry(token) {
  const m = /[&\s]se=(\d+)/.exec(token);
  return m ? Number(m[1]) : NaN;
}

/** Optional integer from the environment. */
function envInt(name) {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) {
    out('ERROR ' + name + ' must be an integer, got ' + JSON.stringify(v));
    process.exit(2);
  }
  return n;
}

module.exports = { hyco, moment, out, escapeText, errText, relayUri, tokenWithExpiry, tokenExpiry, envInt };
