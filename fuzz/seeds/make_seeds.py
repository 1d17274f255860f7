#!/usr/bin/env python3
"""Writes the hand-made seed corpus into fuzz/corpus/<target>/seed-*.

Sources: docs/protocol.md 3 test vectors (tokens), section 4 (connection strings),
section 2 and 5 (request targets, control messages), and real upgrade requests as hyco
and the official clients send them. Run from anywhere; re-running rewrites the seeds.
"""
import hashlib
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")
KEY = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg="
GUID = "4cb542c3-047a-4d40-a19f-bdc66441e736"
ROW1 = ("SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco%2F"
        "&sig=3o5XBbdcRrcduxDvR9yKIJ1Bh1TNLPhkNfq0TF6n%2BJM%3D&se=1700000000&skn=RootManageSharedAccessKey")
ROW2 = ("SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%3A443%2Fhyco"
        "&sig=Asjv0pAzPh45AWRFNLCeK8XUX4OIUTBadEC67Ep7%2FwQ%3D&se=1700000000&skn=RootManageSharedAccessKey")
ROW3 = ("SharedAccessSignature sr=sb%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco"
        "&sig=RUNwUhjNqXTC5obLsNTbOhsSsduddra31L3%2BCkqBaUg%3D&se=1700000000&skn=RootManageSharedAccessKey")
TOKENS = [ROW1, ROW2, ROW3]


def write(target, items):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        if old.startswith("seed-"):
            os.remove(os.path.join(d, old))
    for i, item in enumerate(items):
        data = item.encode() if isinstance(item, str) else item
        name = "seed-%02d-%s" % (i, hashlib.sha1(data).hexdigest()[:10])
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


# --- sas: token text; or lines "sr\nhc-path\nhost\nkey\nse" ---
sas = TOKENS + [
    ROW1.replace("SharedAccessSignature", "sharedaccesssignature").replace("sr=", "SR=").replace("skn=", "Skn="),
    "SharedAccessSignature skn=RootManageSharedAccessKey&se=1700000000&sig=3o5XBbdcRrcduxDvR9yKIJ1Bh1TNLPhkNfq0TF6n%2BJM%3D&sr=http%3A%2F%2Fcontoso.servicebus.windows.net%2Fhyco%2F",
    ROW1 + "&",
    "SharedAccessSignature sr=http%3a%2f%2fcontoso.servicebus.windows.net%2fhyco%2f&sig=x&se=1700000000&skn=k",
    "SharedAccessSignature sr=sb%3A%2F%2Fcontoso.servicebus.windows.net&sig=abc%3D&se=18446744073709551615&skn=send",
    "SharedAccessSignature sr=ws%3A%2F%2F%5B%3A%3A1%5D%3A8080%2Fteam%2Fssh&sig=a&se=1&skn=n",
    "SharedAccessSignature sr=a&sig=b&se=+1&skn=c",
    "SharedAccessSignature sr=a&sig=b&se=18446744073709551616&skn=c",
    "SharedAccessSignature sr=a&sig=b&sig=b&se=1&skn=c",
    "SharedAccessSignature sr=%ZZ&sig=b&se=1&skn=c",
    "SharedAccessSignature sr=a&sig=b&se=1",
    "SharedAccessSignature sr&sig",
    "SharedAccessSignature ",
    "SharedAccessSignatur",
    "http://contoso.servicebus.windows.net/hyco/\nhyco\ncontoso.servicebus.windows.net\n" + KEY + "\n1700000000",
    "http://contoso.servicebus.windows.net:443/hyco\nhyco\ncontoso.servicebus.windows.net:443\n" + KEY + "\n1700000000",
    "sb://contoso.servicebus.windows.net/hyco\nhyco/suffix\nCONTOSO.servicebus.windows.net\n" + KEY + "\n1700000000",
    "sb://contoso.servicebus.windows.net\nteam/ssh\ncontoso.servicebus.windows.net\nk\n0",
    "wss://[::1]:9443/team/ssh/\nteam/ssh/x\n[::1]:9443\nkey\n99",
    "https://relay.local/a%2Fb\na/b\nrelay.local\nkey\n1",
    "ws://user@h/x\nx\nh\nk\n5",
    "ftp://h/x\nx\nh\nk\n5",
    "http://h/x?y\nx\n\nk\n5",
    "http://h:abc/x\nx\nh\nk\nnot-a-number",
    "http://h/%C3%A9t%C3%A9\n\u00e9t\u00e9\nh\n\u00e9\n42",
    ROW1 + "\nhyco\ncontoso.servicebus.windows.net\n" + KEY + "\n1700000000",
    ROW3 + "\nhyco/x/y\n\n" + KEY,
]

# --- connstr ---
conn = [
    "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=" + KEY + ";EntityPath=hyco",
    "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=...;EntityPath=hyco",
    "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessSignature=" + ROW1 + ";EntityPath=hyco",
    "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessSignature=" + ROW3,
    ";;entitypath=hyco;SHAREDACCESSKEY=k=;endpoint=sb://h/;sharedAccessKeyName=n;",
    "Endpoint=sb://h;SharedAccessKeyName= n ;SharedAccessKey=a==b=",
    " Endpoint =sb://h/; EntityPath=x",
    "Endpoint=sb://h/;EntityPath=hyco",
    "Endpoint=sb://h/",
    "Endpoint=sb://localhost:5672;UseDevelopmentEmulator=true;EntityPath=hyco",
    "UseDevelopmentEmulator=true;Endpoint=sb://127.0.0.1:9000/",
    "Endpoint=sb://h;UseDevelopmentEmulator=False",
    "Endpoint=wss://h:8443;UseDevelopmentEmulator=true",
    "Endpoint=ws://relay.local:8080;SharedAccessKeyName=n;SharedAccessKey=k",
    "Endpoint=https://h:1",
    "Endpoint=http://h",
    "Endpoint=ws://[::1]:8080/",
    "Endpoint=sb://[2001:db8::1]",
    "Endpoint=sb://[::1]:80/;UseDevelopmentEmulator=true",
    "Endpoint=sb://h:9443/;EntityPath=team/ssh",
    "Endpoint=sb://h:65536",
    "Endpoint=sb://h:0",
    "Endpoint=sb://user@h",
    "Endpoint=sb://h/hyco",
    "Endpoint=sb://h/;SharedAccessSignature=notatoken",
    "Endpoint=sb://h/;SharedAccessSignature=" + ROW1 + ";SharedAccessKeyName=n",
    "Endpoint=sb://h/;SharedAccessKeyName=n",
    "Endpoint=sb://h/;Foo=bar",
    "Endpoint=sb://h/;;EntityPath",
    "Endpoint=",
    "Endpoint=sb://h/;EntityPath=a;ENTITYPATH=a",
]

# --- address: request targets ---
addr = [
    "/$hc/hyco?sb-hc-action=listen&sb-hc-id=" + GUID,
    "/$hc/hyco?sb-hc-action=connect&sb-hc-id=" + GUID,
    "/$hc/hyco?sb-hc-action=accept&sb-hc-id=" + GUID + "_0123456789abcdef0123456789abcdef",
    "/$hc/hyco?sb-hc-action=accept&sb-hc-id=" + GUID + "&sb-hc-statusCode=404&sb-hc-statusDescription=no%20listener",
    "/$hc/hyco?sb-hc-action=accept&sb-hc-id=1&statusCode=502&statusDescription=no+way",
    "/$hc/hyco?sb-hc-action=listen&sb-hc-token=" + ROW1.replace("%", "%25").replace(" ", "+").replace("&", "%26").replace("=", "%3D"),
    "/$hc/team/ssh/x%20y?a=1&sb-hc-action=connect&b=%2F&sb-hc-id=abc&sb-hc-token=S+A",
    "/$hc/hyco/suffix/more?app=1&other=two&sb-hc-action=connect",
    "/$hc/hyco",
    "/$hc/hyco/",
    "/%24hc/hyco?sb-hc-action=request",
    "/%24HC/hyco?sb-hc-action=connect&sb-hc-id=",
    "/$hc/%C3%A9t%C3%A9?x=%E2%82%AC",
    "/$hc/a//b",
    "/$hc/../a",
    "/$hc/a/%2e%2e",
    "/$hc/a%2Fb",
    "/$hc/a%zz",
    "/$hc/a%00",
    "/$hc/a?sb-hc-action=bogus",
    "/$hc/a?sb-hc-action=listen&sb-hc-action=connect",
    "/$hc/a?sb-hc-id=1&sb-hc-id=2",
    "/$hc/a?sb-hc-action=accept&sb-hc-statusCode=99999",
    "/$hc/a?x=%ff",
    "/$hc/a?sb-hc-unknown=1&&x&=y&sb%2Dhc-action=listen",
    "/$hc/" + "a/" * 33,
    "/hyco?sb-hc-action=listen",
    "a+b%20c%2B",
    "x=1&y=%2&z",
]

# --- control: JSON ---
accept = ('{"accept":{"address":"wss://relay.example:443/$hc/hyco?sb-hc-action=accept&sb-hc-id=' + GUID +
          '","id":"' + GUID + '","connectHeaders":{"Host":"relay.example","Sec-WebSocket-Key":"dGhlIHNhbXBsZSBub25jZQ==",'
          '"Sec-WebSocket-Version":"13","Sec-WebSocket-Protocol":"chat","X-App":"1"},'
          '"remoteEndpoint":{"address":"203.0.113.9","port":51123}}}')
control = [
    '{"renewToken":{"token":"' + ROW1 + '"}}',
    '{"renewToken":{"token":""}}',
    '{"renewToken":{"token":"\\u0041\\n\\ud83d\\ude00"}}',
    '{"renewToken":{"token":"x","extra":[1,2,{"a":null}]}}',
    '{"renewToken":{}}',
    '{"renewToken":null}',
    accept,
    '{"accept":{"address":"wss://r/$hc/h?sb-hc-action=accept","id":"1","connectHeaders":{"Sec-WebSocket-Key":"k"},"remoteEndpoint":{"address":"1.2.3.4","port":5},"extra":1}}',
    '{"accept":{"address":"a","id":"b"}}',
    '{"accept":{"address":"a","id":"b","connectHeaders":{"k":"1","k":"2"}}}',
    '{"accept":{"address":"a","id":"b","remoteEndpoint":{"address":"::1","port":65535}}}',
    '{"accept":{"address":"a","id":"b","remoteEndpoint":{"address":"::1","port":65536}}}',
    '{"accept":{"address":"a","id":"b","remoteEndpoint":null}}',
    ' {"accept" : {"id":"b","address":"a"}} ',
    '{"accept":{"address":"a","id":"b"},"renewToken":{"token":"t"}}',
    '"accept"',
    '{}',
    '[]',
    '{"request":{"address":"a","id":"b"}}',
    # HTTP mode (docs/protocol.md 7): relay `request`, listener `response`.
    '{"request":{"address":"ws://r/$hc/h?sb-hc-action=request&sb-hc-id=1_s","id":"1","requestTarget":"/h/x?q=1","method":"POST","requestHeaders":{"X-App":"1"},"remoteEndpoint":{"address":"1.2.3.4","port":5},"body":true}}',
    '{"request":{"id":"2","method":"GET","body":false}}',
    '{"response":{"requestId":"1","statusCode":200,"responseHeaders":{"content-type":"text/plain","x-n":5,"x-b":true,"x-null":null,"x-o":{},"set-cookie":["a=1",2,null,[]]},"body":true}}',
    '{"response":{"requestId":"1","statusCode":" 404 ","statusDescription":"Not Found","body":false}}',
    '{"response":{"statusCode":70000}}',
    '{"response":{"statusCode":1.5,"responseHeaders":null}}',
]

# --- handshake: request/response heads, frames, close payloads ---
upgrade = ("GET /$hc/hyco?sb-hc-action=listen&sb-hc-id=" + GUID + " HTTP/1.1\r\n"
           "Host: contoso.servicebus.windows.net\r\n"
           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           "ServiceBusAuthorization: " + ROW1 + "\r\n\r\n")
sender = ("GET /$hc/hyco/suffix?app=1&sb-hc-action=connect HTTP/1.1\r\n"
          "Host: contoso.servicebus.windows.net:443\r\n"
          "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
          "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nSec-WebSocket-Version: 13\r\n"
          "Sec-WebSocket-Protocol: chat, superchat\r\nX-App: yes\r\n"
          "ServiceBusAuthorization: " + ROW3 + "\r\n\r\n")
heads = [
    upgrade,
    sender,
    sender.replace("HTTP/1.1", "HTTP/1.0"),
    upgrade.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
    upgrade.replace("\r\n\r\n", "\r\nSec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n\r\n"),
    "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /$hc/hyco?sb-hc-action=request HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    "GET /$hc/hyco HTTP/1.1\r\nUpgrade: websocket\r\n",
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    "HTTP/1.1 404 Endpoint does not exist. TrackingId:6f1c, Timestamp:2026-11-27T10:00:00Z\r\nContent-Length: 3\r\n\r\nno\n",
    "HTTP/1.1 410 Gone\r\n\r\n",
    "HTTP/1.1 200\r\n\r\n",
]
frames = [
    bytes([0x81, 0x05]) + b"hello",                       # text, unmasked
    bytes([0x81, 0x85, 1, 2, 3, 4]) + bytes(b ^ k for b, k in zip(b"hello", [1, 2, 3, 4, 1])),
    bytes([0x82, 0x7E]) + struct.pack(">H", 300) + b"\x00" * 16,
    bytes([0x82, 0xFF]) + struct.pack(">Q", 70000) + b"\xaa\xbb\xcc\xdd" + b"\x01" * 16,
    bytes([0x82, 0x7E, 0x00, 0x05]) + b"abcde",            # non-minimal length form
    bytes([0x88, 0x02]) + struct.pack(">H", 1000),
    bytes([0x88, 0x0B]) + struct.pack(">H", 1008) + b"expired!!",
    bytes([0x88, 0x82, 9, 9, 9, 9]) + bytes(b ^ 9 for b in struct.pack(">H", 1001)),
    bytes([0x88, 0x01, 0x03]),
    bytes([0x89, 0x00]),
    bytes([0x8A, 0x80, 0, 0, 0, 0]),
    bytes([0x00, 0x03]) + b"abc",
    bytes([0x09, 0x00]),                                   # fragmented ping
    bytes([0xC1, 0x00]),                                   # RSV1
    bytes([0x83, 0x00]),                                   # opcode 3
    bytes([0x82, 0x7F]) + struct.pack(">Q", 1 << 63),
    struct.pack(">H", 1000) + b"bye",
    struct.pack(">H", 3000) + "\u00e9".encode(),
    struct.pack(">H", 1005),
]
handshake = heads + frames

# --- relay_handshake: [chunk size, limit selector] + client bytes ---
relay = [
    bytes([255, 0]) + upgrade.encode(),
    bytes([0, 0]) + upgrade.encode(),
    bytes([6, 0]) + sender.encode() + bytes([0x81, 0x80, 1, 2, 3, 4]),
    bytes([255, 0]) + upgrade.replace("ServiceBusAuthorization: " + ROW1 + "\r\n", "").encode(),
    bytes([255, 0]) + upgrade.replace("sb-hc-action=listen", "sb-hc-action=accept").encode(),
    bytes([255, 0]) + upgrade.replace("sb-hc-action=listen", "sb-hc-action=request").encode(),
    bytes([255, 0]) + upgrade.replace("/$hc/hyco", "/$hc/other").encode(),
    bytes([255, 0]) + upgrade.replace("/$hc/hyco", "/hyco").encode(),
    bytes([255, 0]) + upgrade.replace("/$hc/hyco", "/$hc/a%zz").encode(),
    bytes([255, 0]) + upgrade.replace("Upgrade: websocket\r\n", "").encode(),
    bytes([255, 0xF0]) + upgrade.encode(),
    bytes([100, 0]) + ("GET /$hc/hyco?sb-hc-action=listen&sb-hc-token=" +
                       ROW1.replace("%", "%25").replace(" ", "+").replace("&", "%26").replace("=", "%3D") +
                       " HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode(),
    bytes([255, 0]) + b"GET / HTTP/1.1\r\n\r\n",
    bytes([255, 0]) + b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello start
    bytes([255, 0]) + b"GET /$hc/hyco HTTP/1.1\r\nHost: x\r\n",
    bytes([3, 0]) + b"garbage\r\n\r\n",
]

# --- rendezvous_address: [relay endpoint line "\n"] address a relay handed out ---
acc = "/$hc/hyco?sb-hc-action=accept&sb-hc-id=4f1c_0123456789abcdef0123456789abcdef"
rendezvous = [
    ("ws://127.0.0.1:9400" + acc).encode(),
    ("ws://127.0.0.1:22" + acc).encode(),
    ("ws://localhost:9400" + acc).encode(),
    ("wss://127.0.0.1:9400" + acc).encode(),
    ("ws://127.0.0.1:9400" + acc + "\r\nX-Evil: 1").encode(),
    ("sb://contoso.servicebus.windows.net/\nwss://g19-prod-am3-003-sb.servicebus.windows.net" + acc).encode(),
    ("sb://contoso.servicebus.windows.net/\nwss://contoso.servicebus.windows.net:8443" + acc).encode(),
    ("sb://contoso.servicebus.windows.net/\nwss://x.servicebus.windows.net.evil.net" + acc).encode(),
    ("sb://contoso.servicebus.windows.net/\nws://g1.servicebus.windows.net" + acc).encode(),
    ("wss://[::1]:9443\nwss://[::1]:9443" + acc).encode(),
    ("ws://relay.example.net:9400\nws://RELAY.example.net:9400?x").encode(),
]

# --- http_mode: a client's request head, for HC web2 with targets api, admin and a default ---
http_mode = [
    b"GET /web2/api/items?x=1 HTTP/1.1\r\nHost: relay\r\n\r\n",
    b"GET /web2/api%2Fadmin HTTP/1.1\r\nHost: relay\r\n\r\n",
    b"GET /web2/API/x HTTP/1.1\r\nHost: relay\r\n\r\n",
    b"GET /web2//admin/ HTTP/1.1\r\nHost: relay\r\n\r\n",
    b"POST /web2/other/a%20b?sb-hc-token=SharedAccessSignature+sr%3Dx&q HTTP/1.1\r\nHost: r\r\nContent-Length: 0\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
    b"GET /web2 HTTP/1.0\r\n\r\n",
    b"GET /web2/%2e%2e/api HTTP/1.1\r\nHost: r\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n\r\n",
    b"GET /web2/api HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n",
]

write("sas", sas)
write("connstr", conn)
write("address", addr)
write("control", control)
write("handshake", handshake)
write("relay_handshake", relay)
write("rendezvous_address", rendezvous)
write("http_mode", http_mode)
