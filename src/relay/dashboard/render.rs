//! What the status page shows: one JSON snapshot of the relay ([`status`]), the HTML page
//! made from it, and the once-a-second event. Reads snapshots only; escapes every text
//! that came from a peer (HC names) before it reaches the page.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::encoding::escape_markup;

use super::super::activity::REJECTION_WINDOW_MINUTES;
use super::super::metrics::{Flow, Metrics, Reason, Unserved};

/// Tunnels listed on the page, busiest first; the rest are counted below the table (and
/// all are in `/api/status`).
pub const MAX_TUNNELS_SHOWN: usize = 200;

/// The page's template: `{{body}}` is replaced by the tables.
const PAGE: &str = include_str!("page.html");
/// The page's script, served at `/dashboard.js`.
pub(super) const SCRIPT: &str = include_str!("dashboard.js");

/// The relay now, as `/api/status` gives it and the page shows it.
pub fn status(metrics: &Metrics) -> Value {
    let attached = metrics.attached();
    let registry = attached.as_ref().and_then(|a| a.registry.upgrade());
    let hcs: Vec<Value> = registry.map(|r| r.snapshot()).unwrap_or_default().into_iter().map(|hc| {
        let listeners: Vec<Value> = hc.listeners.iter().map(|(id, peer)| {
            json!({ "id": id, "peer": peer.map(|p| p.0.to_string()), "since": peer.map(|p| p.1) })
        }).collect();
        json!({ "name": hc.name, "configured": hc.configured, "created": hc.created, "waiting": hc.pending, "listeners": listeners })
    }).collect();
    let tunnels: Vec<Value> = metrics.activity().tunnels().into_iter().map(|(id, t)| {
        let bytes = |f: Flow| t.bytes[f as usize].load(std::sync::atomic::Ordering::Relaxed);
        json!({ "id": id, "hc": t.hc, "via": t.via, "since": t.since,
                "sender_to_listener": bytes(Flow::SenderToListener), "listener_to_sender": bytes(Flow::ListenerToSender) })
    }).collect();
    let ports: Vec<Value> = metrics.public_ports().into_iter().map(|((proto, port), hc, c)| {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let refused: u64 = Unserved::ALL.iter().map(|&u| c.rejected(u)).sum();
        json!({ "proto": proto.as_str(), "port": port, "hc": hc, "active": c.active(), "opened": load(&c.opened),
                "visitor_to_listener": load(&c.bytes[0]), "listener_to_visitor": load(&c.bytes[1]), "unserved": refused })
    }).collect();
    let (minute, window) =
        (metrics.activity().recent_rejections(1), metrics.activity().recent_rejections(REJECTION_WINDOW_MINUTES));
    let rejections: serde_json::Map<String, Value> = Reason::ALL
        .iter()
        .map(|&r| {
            let counts = json!({ "last_minute": minute[r as usize], "last_15_minutes": window[r as usize],
                                 "since_start": metrics.rejected(r) });
            (r.label().to_owned(), counts)
        })
        .collect();
    let limits = attached.as_ref().map(|a| {
        let l = &a.limits;
        json!({
            "max_connections": l.max_connections,
            "max_listeners_per_hc": l.max_listeners_per_hc,
            "max_pending_senders_per_hc": l.max_pending_senders_per_hc,
            "max_auto_hcs": l.max_auto_hcs,
            "max_header_bytes": l.max_header_bytes,
            "max_control_message": l.max_control_message,
            "handshake_timeout_seconds": l.handshake_timeout.as_secs_f64(),
            "accept_window_seconds": l.accept_window.as_secs_f64(),
            "tunnel_idle_timeout_seconds": l.tunnel_idle_timeout.map(|d| d.as_secs_f64()),
            "max_http_request_body": l.max_http_request_body,
        })
    });
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": attached.as_ref().map_or(0, |a| a.started.elapsed().as_secs()),
        "now": crate::protocol::unix_now(),
        "hybrid_connections": hcs,
        "tunnels": tunnels,
        "tunnels_active": metrics.tunnels_active(),
        "tunnels_total": metrics.tunnels_total(),
        "relayed_bytes": { "sender_to_listener": metrics.relayed_bytes(Flow::SenderToListener),
                           "listener_to_sender": metrics.relayed_bytes(Flow::ListenerToSender) },
        "public_ports": ports,
        "rejections": rejections,
        "limits": limits,
    })
}

/// One event of `/api/events`: totals and bytes per second each way, and live tunnels.
pub(super) fn event(metrics: &Metrics, totals: [u64; 2], rates: [u64; 2]) -> Value {
    json!({
        "now": crate::protocol::unix_now(),
        "sender_to_listener": totals[0], "listener_to_sender": totals[1],
        "rate_sender_to_listener": rates[0], "rate_listener_to_sender": rates[1],
        "tunnels_active": metrics.tunnels_active(),
    })
}

/// The page for `status`: plain tables, then the chart the script fills.
pub(super) fn html(status: &Value) -> String {
    let mut b = String::with_capacity(8192);
    let text = |v: &Value| {
        escape_markup(&match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".to_owned(),
            other => other.to_string(),
        })
    };
    let when = |v: &Value| v.as_u64().map_or_else(|| "-".to_owned(), crate::protocol::rfc3339);
    let _ = write!(
        b,
        "<p id=\"summary\">Version {}, up {}. Tunnels open: <span id=\"tunnels-active\">{}</span> ({} since start).</p>",
        text(&status["version"]),
        duration(status["uptime_seconds"].as_u64().unwrap_or(0)),
        status["tunnels_active"],
        status["tunnels_total"],
    );
    b.push_str(
        "<section aria-labelledby=\"h-rate\"><h2 id=\"h-rate\">Throughput</h2>\
         <p>Sender to listener: <output id=\"rate-s2l\">-</output>; listener to sender: \
         <output id=\"rate-l2s\">-</output>. Events: <output id=\"events\">0</output>.</p>\
         <svg id=\"chart\" role=\"img\" aria-label=\"Throughput each way, last minute\" viewBox=\"0 0 600 120\" \
         width=\"600\" height=\"120\" preserveAspectRatio=\"none\"><rect width=\"600\" height=\"120\" class=\"bg\"/>\
         <polyline id=\"line-s2l\" class=\"s2l\" points=\"\"/><polyline id=\"line-l2s\" class=\"l2s\" points=\"\"/>\
         <text id=\"chart-max\" x=\"6\" y=\"14\"></text></svg>\
         <noscript><p>The chart needs JavaScript; the tables do not.</p></noscript></section>",
    );
    // The script swaps this part for a fresh copy of the page's.
    b.push_str("<div id=\"live\">");
    b.push_str("<section aria-labelledby=\"h-hc\"><h2 id=\"h-hc\">Hybrid connections</h2><table><thead><tr>\
        <th scope=\"col\">Name</th><th scope=\"col\">Kind</th><th scope=\"col\">Listeners</th><th scope=\"col\">Waiting</th>\
        <th scope=\"col\">Listener peer</th><th scope=\"col\">Connected since</th></tr></thead><tbody>");
    for hc in status["hybrid_connections"].as_array().into_iter().flatten() {
        let listeners = hc["listeners"].as_array().cloned().unwrap_or_default();
        let kind = if hc["configured"] == true { "configured" } else { "created on first listen" };
        let rows = listeners.len().max(1);
        let _ = write!(
            b,
            "<tr><th scope=\"row\" rowspan=\"{rows}\">{}</th><td rowspan=\"{rows}\">{kind}</td><td rowspan=\"{rows}\">{}</td>\
             <td rowspan=\"{rows}\">{}</td>",
            text(&hc["name"]),
            listeners.len(),
            hc["waiting"],
        );
        if listeners.is_empty() {
            b.push_str("<td>-</td><td>-</td></tr>");
        }
        for (i, l) in listeners.iter().enumerate() {
            let peer = if l["peer"].is_null() { "on another node".to_owned() } else { text(&l["peer"]) };
            let _ = write!(b, "{}<td>{peer}</td><td>{}</td></tr>", if i > 0 { "<tr>" } else { "" }, when(&l["since"]));
        }
    }
    if status["hybrid_connections"].as_array().is_none_or(|a| a.is_empty()) {
        b.push_str("<tr><td colspan=\"6\">No hybrid connection yet: one appears when a listener connects.</td></tr>");
    }
    b.push_str("</tbody></table></section>");
    b.push_str(
        "<section aria-labelledby=\"h-tun\"><h2 id=\"h-tun\">Tunnels</h2><table><thead><tr>\
        <th scope=\"col\">Id</th><th scope=\"col\">Hybrid connection</th><th scope=\"col\">Via</th>\
        <th scope=\"col\">Open since</th><th scope=\"col\">Bytes sender to listener</th>\
        <th scope=\"col\">Bytes listener to sender</th></tr></thead><tbody>",
    );
    let mut tunnels: Vec<&Value> = status["tunnels"].as_array().into_iter().flatten().collect();
    let moved =
        |t: &Value| t["sender_to_listener"].as_u64().unwrap_or(0) + t["listener_to_sender"].as_u64().unwrap_or(0);
    tunnels.sort_by_key(|t| std::cmp::Reverse(moved(t)));
    for t in tunnels.iter().take(MAX_TUNNELS_SHOWN) {
        let via = if t["via"].is_null() { "WebSocket".to_owned() } else { format!("public port {}", text(&t["via"])) };
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{via}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            t["id"],
            text(&t["hc"]),
            when(&t["since"]),
            t["sender_to_listener"],
            t["listener_to_sender"],
        );
    }
    if tunnels.is_empty() {
        b.push_str("<tr><td colspan=\"6\">No tunnel is open.</td></tr>");
    }
    b.push_str("</tbody></table>");
    if let Some(more) = tunnels.len().checked_sub(MAX_TUNNELS_SHOWN).filter(|&n| n > 0) {
        let _ = write!(b, "<p>And {more} more, with fewer bytes (all are in /api/status).</p>");
    }
    b.push_str("</section>");
    b.push_str(
        "<section aria-labelledby=\"h-pub\"><h2 id=\"h-pub\">Public ports</h2><table><thead><tr>\
        <th scope=\"col\">Port</th><th scope=\"col\">Hybrid connection</th><th scope=\"col\">Open now</th>\
        <th scope=\"col\">Opened</th><th scope=\"col\">Bytes in</th><th scope=\"col\">Bytes out</th>\
        <th scope=\"col\">Not served</th></tr></thead><tbody>",
    );
    for p in status["public_ports"].as_array().into_iter().flatten() {
        let _ = write!(
            b,
            "<tr><td>{}/{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            p["port"],
            text(&p["proto"]),
            text(&p["hc"]),
            p["active"],
            p["opened"],
            p["visitor_to_listener"],
            p["listener_to_visitor"],
            p["unserved"],
        );
    }
    if status["public_ports"].as_array().is_none_or(|a| a.is_empty()) {
        b.push_str("<tr><td colspan=\"7\">No public port is open.</td></tr>");
    }
    b.push_str("</tbody></table></section>");
    b.push_str(
        "<section aria-labelledby=\"h-rej\"><h2 id=\"h-rej\">Rejections</h2><table><thead><tr>\
        <th scope=\"col\">Reason</th><th scope=\"col\">Last minute</th><th scope=\"col\">Last 15 minutes</th>\
        <th scope=\"col\">Since start</th></tr></thead><tbody>",
    );
    let mut any = false;
    for (reason, n) in status["rejections"].as_object().into_iter().flatten() {
        if n["since_start"].as_u64().unwrap_or(0) == 0 {
            continue;
        }
        any = true;
        let _ = write!(
            b,
            "<tr><th scope=\"row\">{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape_markup(reason),
            n["last_minute"],
            n["last_15_minutes"],
            n["since_start"],
        );
    }
    if !any {
        b.push_str("<tr><td colspan=\"4\">None since start.</td></tr>");
    }
    b.push_str("</tbody></table></section>");
    b.push_str("<section aria-labelledby=\"h-lim\"><h2 id=\"h-lim\">Limits</h2><table><tbody>");
    for (name, v) in status["limits"].as_object().into_iter().flatten() {
        let _ = write!(b, "<tr><th scope=\"row\">{}</th><td class=\"num\">{}</td></tr>", escape_markup(name), text(v));
    }
    b.push_str("</tbody></table></section></div>");
    PAGE.replace("{{body}}", &b)
}

/// `secs` as `1d 2h 3m 4s`, largest unit first.
fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_largest_unit_first() {
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(3661), "1h 1m 1s");
        assert_eq!(duration(90061), "1d 1h 1m 1s");
    }

    #[test]
    fn the_page_escapes_hc_names() {
        let page = html(&json!({ "version": "1", "uptime_seconds": 0, "tunnels_active": 0, "tunnels_total": 0,
            "hybrid_connections": [{ "name": "<script>x</script>", "configured": true, "waiting": 0, "listeners": [] }] }));
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!page.contains("<script>x"));
    }

    #[test]
    fn the_page_lists_the_busiest_tunnels_up_to_the_limit_and_counts_the_rest() {
        let tunnels: Vec<Value> = (0..MAX_TUNNELS_SHOWN as u64 + 3)
            .map(|i| json!({ "id": i, "hc": "web", "via": null, "since": 0, "sender_to_listener": i, "listener_to_sender": 0 }))
            .collect();
        let page = html(&json!({ "version": "1", "uptime_seconds": 0, "tunnels_active": 0, "tunnels_total": 0,
            "hybrid_connections": [], "tunnels": tunnels }));
        let rows = page.matches("<td>WebSocket</td>").count();
        assert_eq!(rows, MAX_TUNNELS_SHOWN);
        assert!(page.contains("And 3 more, with fewer bytes"), "{page}");
        // The busiest first; the three idlest are the ones left out.
        let busiest = MAX_TUNNELS_SHOWN + 2;
        assert!(page.contains(&format!("<tr><td>{busiest}</td>")));
        assert!(!page.contains("<tr><td>0</td>") && !page.contains("<tr><td>2</td>"));
    }

    #[test]
    fn rejections_show_their_recent_counts_and_only_reasons_seen() {
        let page = html(&json!({ "version": "1", "uptime_seconds": 0, "tunnels_active": 0, "tunnels_total": 0,
            "rejections": { "unauthorized": { "last_minute": 2, "last_15_minutes": 5, "since_start": 9 },
                            "timeout": { "last_minute": 0, "last_15_minutes": 0, "since_start": 0 } } }));
        assert!(
            page.contains(
                "<th scope=\"row\">unauthorized</th><td class=\"num\">2</td><td class=\"num\">5</td>\
            <td class=\"num\">9</td>"
            ),
            "{page}"
        );
        assert!(!page.contains(">timeout<"), "{page}");
        let none = html(&json!({ "version": "1", "rejections": {} }));
        assert!(none.contains("None since start."));
    }
}
