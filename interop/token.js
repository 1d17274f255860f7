'use strict';
// node token.js <uri> <keyName> <key> [<expiry-unix>]
// Prints the token hyco-ws 1.0.5's createRelayToken makes for <uri>, on one line.
// With <expiry-unix>, moment's clock is pinned so that se is exactly that value;
// without it, se = now + 3600 (hyco-ws's default).
const { hyco, out, tokenWithExpiry } = require('./common');

const [uri, keyName, key, expiry] = process.argv.slice(2);
if (!uri || !keyName || key === undefined) {
  process.stderr.write('usage: node token.js <uri> <keyName> <key> [<expiry-unix>]\n');
  process.exit(2);
}
if (expiry === undefined) {
  out(hyco.createRelayToken(uri, keyName, key));
} else {
  if (!/^\d+$/.test(expiry)) {
    process.stderr.write('expiry must be Unix seconds\n');
    process.exit(2);
  }
  out(tokenWithExpiry(uri, keyName, key, Number(expiry)));
}
