// The status page's live parts: reads /api/events (one event a second) and draws the
// throughput each way over the last minute into the fixed-size SVG, writing the latest
// figures into the page; every two seconds it fetches the page again and swaps in its
// tables (the server rendered and escaped them) when they changed. No other script, no
// network but this page's own.
(function () {
  "use strict";
  var POINTS = 60, W = 600, H = 120;
  var s2l = [], l2s = [], count = 0;
  function $(id) { return document.getElementById(id); }
  function line(values, max) {
    var step = W / (POINTS - 1), out = [];
    for (var i = 0; i < values.length; i++) {
      var x = (POINTS - values.length + i) * step;
      var y = H - 2 - (values[i] / max) * (H - 4);
      out.push(x.toFixed(1) + "," + y.toFixed(1));
    }
    return out.join(" ");
  }
  // Bytes per second in three significant figures: "0 B/s", "512 B/s", "1.05 MB/s".
  function human(n) {
    var units = ["B/s", "kB/s", "MB/s", "GB/s", "TB/s"], i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return (i === 0 ? String(Math.round(n)) : n.toPrecision(3)) + " " + units[i];
  }
  function rate(id, n) {
    $(id).textContent = human(n);
    $(id).dataset.value = String(n);
  }
  function draw() {
    var max = 1;
    s2l.concat(l2s).forEach(function (v) { if (v > max) { max = v; } });
    $("chart-max").textContent = "top: " + human(max);
    $("line-s2l").setAttribute("points", line(s2l, max));
    $("line-l2s").setAttribute("points", line(l2s, max));
  }
  var REFRESH_MS = 2000, refreshes = 0;
  function refresh() {
    if (!window.fetch || !window.DOMParser) { return; }
    fetch("/", { cache: "no-store", credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (text) {
      if (text === null) { return; }
      var fresh = new DOMParser().parseFromString(text, "text/html");
      ["summary", "live"].forEach(function (id) {
        var now = $(id), next = fresh.getElementById(id);
        if (now && next && now.innerHTML !== next.innerHTML) { now.innerHTML = next.innerHTML; }
      });
      refreshes += 1;
      document.body.setAttribute("data-refreshes", String(refreshes));
    }).catch(function () {}).then(function () { setTimeout(refresh, REFRESH_MS); });
  }
  setTimeout(refresh, REFRESH_MS);
  if (!window.EventSource || !$("chart")) { return; }
  var source = new EventSource("/api/events");
  source.onmessage = function (e) {
    var d = JSON.parse(e.data);
    s2l.push(d.rate_sender_to_listener); l2s.push(d.rate_listener_to_sender);
    if (s2l.length > POINTS) { s2l.shift(); l2s.shift(); }
    count += 1;
    rate("rate-s2l", d.rate_sender_to_listener);
    rate("rate-l2s", d.rate_listener_to_sender);
    $("tunnels-active").textContent = d.tunnels_active;
    $("events").textContent = count;
    draw();
  };
}());
