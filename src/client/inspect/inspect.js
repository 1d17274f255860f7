// The request inspector's script: on the list, adds each new request at the top as it
// comes (server-sent events from /api/events, filtered as the form says) inside the
// fixed-height table, so the page does not move; on a request's page, Replay asks for a
// replay (with the X-Hyco-Replay header a cross-site form cannot send) and shows the new
// response beside the old one. No other script, no network but this page's own.
(function () {
  "use strict";
  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }
  function size(n) {
    if (n < 1024) { return n + " B"; }
    if (n < 1048576) { return (n / 1024).toFixed(1) + " KiB"; }
    return (n / 1048576).toFixed(1) + " MiB";
  }
  function statusClass(s) {
    var c = Math.floor((s || 0) / 100);
    return c === 2 || c === 3 ? "ok" : c === 4 ? "warn" : "bad";
  }
  function statusText(r) { return r.status === null ? "-" : r.status + (r.failed ? " (listener)" : ""); }

  // The list: live rows.
  var rows = $("rows");
  if (rows && window.EventSource) {
    var limit = Number($("requests").getAttribute("data-limit")) || 100;
    var wantStatus = ($("f-status").defaultValue || "").trim().toLowerCase();
    var wantPath = $("f-path").defaultValue || "";
    var matches = function (r) {
      var s = String(r.status || 0);
      if (wantStatus && (wantStatus.slice(1) === "xx" ? s[0] !== wantStatus[0] : s !== wantStatus)) { return false; }
      return r.path.indexOf(wantPath) >= 0;
    };
    var newest = 0, added = 0;
    Array.prototype.forEach.call(rows.querySelectorAll("tr[data-id]"), function (tr) {
      newest = Math.max(newest, Number(tr.getAttribute("data-id")));
    });
    var source = new EventSource("/api/events?after=" + newest);
    source.onmessage = function (e) {
      var r = JSON.parse(e.data);
      if (rows.querySelector("tr[data-id='" + r.id + "']") || !matches(r)) { return; }
      var none = $("none");
      if (none) { none.remove(); }
      var tr = el("tr");
      tr.setAttribute("data-id", r.id);
      tr.appendChild(el("td", r.time));
      tr.appendChild(el("td", r.method));
      var td = el("td", null, "path"), a = el("a", r.path);
      a.href = "/requests/" + r.id;
      td.appendChild(a);
      if (r.replay_of) { td.appendChild(el("small", " (replay of #" + r.replay_of + ")")); }
      tr.appendChild(td);
      tr.appendChild(el("td", statusText(r), statusClass(r.status)));
      tr.appendChild(el("td", r.duration_ms + " ms", "num"));
      tr.appendChild(el("td", size(r.response_bytes), "num"));
      rows.insertBefore(tr, rows.firstChild);
      while (rows.children.length > limit) { rows.removeChild(rows.lastChild); }
      added += 1;
      $("live").textContent = added + " new since this page was loaded; the newest is #" + r.id + ".";
    };
  }

  // A request: replay, shown beside the original.
  function headersTable(caption, headers) {
    var t = el("table", null, "kv"), body = el("tbody");
    t.appendChild(el("caption", caption));
    if (!headers.length) { var tr0 = el("tr"), td0 = el("td", "None"); td0.colSpan = 2; tr0.appendChild(td0); body.appendChild(tr0); }
    headers.forEach(function (h) {
      var tr = el("tr"), th = el("th", h[0]);
      th.scope = "row";
      tr.appendChild(th);
      tr.appendChild(el("td", h[1]));
      body.appendChild(tr);
    });
    t.appendChild(body);
    return t;
  }
  function bodyView(into, b) {
    into.appendChild(el("h3", "Response body"));
    if (b.kind === "text" || b.kind === "json") {
      var pre = el("pre", b.text, "body");
      pre.tabIndex = 0;
      into.appendChild(pre);
    } else if (b.kind === "binary") {
      var p = el("p", "Binary, " + size(b.size) + " of " + (b.content_type || "no stated type") + ". First bytes: ");
      p.appendChild(el("code", b.hex, "hex"));
      into.appendChild(p);
    } else {
      into.appendChild(el("p", "Empty."));
    }
    if (b.not_kept > 0) { into.appendChild(el("p", b.not_kept + " more bytes not kept (" + size(b.size) + " in all).", "note")); }
  }
  function showReplay(r) {
    var pane = $("replayed");
    var parts = [];
    var h2 = el("h2", "Replay ");
    h2.id = "h-rep";
    var a = el("a", "#" + r.id);
    a.href = "/requests/" + r.id;
    h2.appendChild(a);
    parts.push(h2);
    var t = el("table", null, "kv"), tb = el("tbody");
    t.appendChild(el("caption", "Outcome"));
    [["Status", statusText(r), statusClass(r.status)], ["Duration", r.duration_ms + " ms"], ["Size", size(r.response_bytes)]]
      .concat(r.error ? [["Listener's error", r.error]] : [])
      .forEach(function (row) {
        var tr = el("tr"), th = el("th", row[0]);
        th.scope = "row";
        tr.appendChild(th);
        tr.appendChild(el("td", row[1], row[2]));
        tb.appendChild(tr);
      });
    t.appendChild(tb);
    parts.push(t);
    parts.push(headersTable("Response headers", r.response.headers));
    var holder = el("div");
    bodyView(holder, r.response.body);
    parts.push(holder);
    pane.replaceChildren.apply(pane, parts);
  }
  var button = $("replay");
  if (button) {
    button.addEventListener("click", function () {
      var note = $("replay-note");
      button.disabled = true;
      note.textContent = "Replaying…";
      fetch("/api/requests/" + button.getAttribute("data-id") + "/replay", { method: "POST", headers: { "X-Hyco-Replay": "1" } })
        .then(function (res) {
          return res.text().then(function (text) {
            if (!res.ok) { throw new Error(text.trim() || res.status); }
            return JSON.parse(text);
          });
        })
        .then(function (r) { showReplay(r); note.textContent = "Replayed as #" + r.id + "."; })
        .catch(function (e) { note.textContent = "Replay failed: " + e.message; })
        .then(function () { button.disabled = false; button.focus(); });
    });
  }
}());
