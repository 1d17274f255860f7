// The status page's live chart: reads /api/events (one event a second) and draws the
// throughput each way over the last minute into the fixed-size SVG, writing the latest
// figures into the page. No other script, no network but this page's own.
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
  function draw() {
    var max = 1;
    s2l.concat(l2s).forEach(function (v) { if (v > max) { max = v; } });
    $("line-s2l").setAttribute("points", line(s2l, max));
    $("line-l2s").setAttribute("points", line(l2s, max));
  }
  if (!window.EventSource || !$("chart")) { return; }
  var source = new EventSource("/api/events");
  source.onmessage = function (e) {
    var d = JSON.parse(e.data);
    s2l.push(d.rate_sender_to_listener); l2s.push(d.rate_listener_to_sender);
    if (s2l.length > POINTS) { s2l.shift(); l2s.shift(); }
    count += 1;
    $("rate-s2l").textContent = d.rate_sender_to_listener;
    $("rate-l2s").textContent = d.rate_listener_to_sender;
    $("tunnels-active").textContent = d.tunnels_active;
    $("events").textContent = count;
    draw();
  };
}());
