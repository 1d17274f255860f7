//! What the request inspector shows: records as JSON (summaries and details) and as HTML
//! (the list with its filter form, one request with its response and its replay side by
//! side), bodies as escaped text or a binary summary. Reads records, which hold masked
//! heads only; escapes every text before it reaches a page. No I/O.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::store::{Kept, Record};
use crate::encoding::escape_markup;
use crate::http1::header;
use crate::status::human;

/// The pages' template: `{{title}}` and `{{body}}` are filled in.
const PAGE: &str = include_str!("page.html");
/// The pages' script, served at `/inspect.js`.
pub(super) const SCRIPT: &str = include_str!("inspect.js");
/// How many leading bytes of a binary body are shown in hex.
const HEX_BYTES: usize = 64;

/// Which requests a list shows: `?status=2xx|404&path=SUBSTRING`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Filter {
    /// `(class, None)` for `4xx`, `(4, Some(404))` for one status.
    status: Option<(u16, Option<u16>)>,
    status_text: String,
    path: String,
}

impl Filter {
    /// From a query string; `Err` with a text for a status that is neither `Nxx` nor a code.
    pub(super) fn parse(query: &str) -> Result<Self, String> {
        let pairs = crate::encoding::parse_query(query).map_err(|_| "The query is not valid percent-encoding")?;
        let mut filter = Filter::default();
        for (name, value) in pairs {
            match name.as_str() {
                "status" => filter.status_text = value.trim().to_owned(),
                "path" => filter.path = value,
                _ => {}
            }
        }
        let s = filter.status_text.to_ascii_lowercase();
        filter.status = match (s.len(), s.strip_suffix("xx")) {
            (0, _) => None,
            (3, Some(class)) => class.parse::<u16>().ok().filter(|c| (1..=5).contains(c)).map(|c| (c, None)),
            (3, None) => s.parse::<u16>().ok().filter(|c| (100..=599).contains(c)).map(|c| (c / 100, Some(c))),
            _ => None,
        };
        if filter.status.is_none() && !s.is_empty() {
            return Err(format!("status={}: give a class like 2xx or 4xx, or a status like 404", filter.status_text));
        }
        Ok(filter)
    }

    pub(super) fn matches(&self, r: &Record) -> bool {
        let status = r.status.unwrap_or(0);
        let by_status = match self.status {
            None => true,
            Some((_, Some(code))) => status == code,
            Some((class, None)) => status / 100 == class,
        };
        by_status && r.path.contains(&self.path)
    }
}

/// A record's line in a list.
pub(super) fn summary(r: &Record) -> Value {
    json!({
        "id": r.id,
        "time_ms": r.time_ms,
        "time": clock(r.time_ms),
        "method": r.method,
        "path": r.path,
        "target": r.target,
        "status": r.status,
        "duration_ms": r.duration_ms,
        "request_bytes": r.request_body.total,
        "response_bytes": r.response_body.total,
        "failed": r.error.is_some(),
        "replay_of": r.replay_of,
        "replayable": replayable(r),
    })
}

/// Everything shown of a record.
pub(super) fn detail(r: &Record) -> Value {
    let heads = |h: &[(String, String)]| h.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>();
    let mut v = summary(r);
    v["error"] = json!(r.error);
    v["request"] = json!({ "headers": heads(&r.request_headers), "body": body(&r.request_body, &r.request_headers) });
    v["response"] =
        json!({ "headers": heads(&r.response_headers), "body": body(&r.response_body, &r.response_headers) });
    v
}

/// Whether a replay can send the request as it was: its body kept whole.
pub(super) fn replayable(r: &Record) -> bool {
    r.plan.is_some() && r.request_body.whole()
}

/// A body as shown: its size, what is kept, and text (JSON pretty-printed) or hex.
fn body(kept: &Kept, headers: &[(String, String)]) -> Value {
    let kind = header(headers, "Content-Type").unwrap_or("").to_owned();
    let bytes = &kept.bytes;
    let mut v = json!({ "size": kept.total, "kept": bytes.len(), "not_kept": kept.total - bytes.len() as u64,
                        "content_type": kind });
    if kept.total == 0 {
        v["kind"] = "empty".into();
        return v;
    }
    let lower = kind.to_ascii_lowercase();
    let textual = lower.starts_with("text/")
        || ["json", "xml", "javascript", "x-www-form-urlencoded", "graphql"].iter().any(|t| lower.contains(t));
    // A prefix may end inside a character: the part before it is still text.
    let text = match std::str::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    let plain = |s: &str| s.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'));
    match text {
        Some(s) if textual || plain(s) => {
            let pretty =
                (lower.contains("json") && kept.whole() && serde_json::from_str::<Value>(s).is_ok()).then(|| indent(s));
            v["kind"] = if pretty.is_some() { "json" } else { "text" }.into();
            v["text"] = pretty.unwrap_or_else(|| s.to_owned()).into();
        }
        _ => {
            v["kind"] = "binary".into();
            let first: Vec<String> = bytes.iter().take(HEX_BYTES).map(|b| format!("{b:02x}")).collect();
            v["hex"] = first.join(" ").into();
        }
    }
    v
}

/// `json` (valid JSON) indented two spaces a level, its members in their order.
fn indent(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                match chars.next_if(|c| matches!(c, '}' | ']')) {
                    Some(end) => out.push(end),
                    None => {
                        depth += 1;
                        newline(&mut out, depth);
                    }
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// The most rows the list page holds (the page stays light with 10,000 requests kept;
/// `/api/requests` has them all).
pub(crate) const MAX_LIST_ROWS: usize = 500;

/// The list page: the filter form and the newest kept requests that match, at most
/// [`MAX_LIST_ROWS`].
pub(super) fn list_page(records: &[std::sync::Arc<Record>], filter: &Filter, limit: usize) -> String {
    let shown: Vec<&Record> = records.iter().map(|r| &**r).filter(|r| filter.matches(r)).collect();
    let mut b = String::with_capacity(4096 + shown.len() * 256);
    let _ = write!(
        b,
        "<form class=\"filter\" method=\"get\" action=\"/\" role=\"search\">\
         <label for=\"f-status\">Status</label> <input id=\"f-status\" name=\"status\" value=\"{}\" size=\"6\" \
         placeholder=\"2xx, 404\"> <label for=\"f-path\">Path contains</label> <input id=\"f-path\" name=\"path\" \
         value=\"{}\" placeholder=\"/api\"> <button type=\"submit\">Filter</button> <a href=\"/\">Clear</a></form>",
        escape_markup(&filter.status_text),
        escape_markup(&filter.path),
    );
    let rows = limit.min(MAX_LIST_ROWS);
    let more = if shown.len() > rows {
        format!(" The newest {rows} are listed: filter, or read /api/requests for all.")
    } else {
        String::new()
    };
    let _ = write!(
        b,
        "<p id=\"live\" role=\"status\">Showing {} of {} kept requests (the last {limit} are kept).{more} \
         New requests appear at the top as they come.</p>",
        shown.len(),
        records.len(),
    );
    let _ = write!(
        b,
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-labelledby=\"requests-caption\"><table id=\"requests\" data-limit=\"{rows}\"><caption id=\"requests-caption\">Requests through this \
         listener, newest first</caption><thead><tr><th scope=\"col\">Time (UTC)</th><th scope=\"col\">Method</th>\
         <th scope=\"col\">Path</th><th scope=\"col\">Status</th><th scope=\"col\" class=\"num\">Duration</th>\
         <th scope=\"col\" class=\"num\">Size</th></tr></thead><tbody id=\"rows\">"
    );
    if shown.is_empty() {
        b.push_str("<tr id=\"none\"><td colspan=\"6\">No requests yet.</td></tr>");
    }
    for r in shown.iter().take(rows) {
        let replay = r.replay_of.map_or_else(String::new, |o| format!(" <small>(replay of #{o})</small>"));
        let _ = write!(
            b,
            "<tr data-id=\"{id}\"><td>{}</td><td>{}</td><td class=\"path\"><a href=\"/requests/{id}\">{}</a>{replay}</td>\
             <td class=\"{}\">{}</td><td class=\"num\">{} ms</td><td class=\"num\">{}</td></tr>",
            clock(r.time_ms),
            escape_markup(&r.method),
            escape_markup(&r.path),
            status_class(r),
            status_text(r),
            r.duration_ms,
            human(r.response_body.total as f64),
            id = r.id,
        );
    }
    b.push_str("</tbody></table></div>");
    page("hyco request inspector", &b)
}

/// One request: its head and body, then its response and its latest replay's side by side.
pub(super) fn detail_page(r: &Record, replay: Option<&Record>) -> String {
    let mut b = String::with_capacity(16 * 1024);
    b.push_str("<p><a href=\"/\">All requests</a></p>");
    let _ = write!(
        b,
        "<section aria-labelledby=\"h-req\"><h2 id=\"h-req\">Request #{}</h2><div class=\"cols\"><div>",
        r.id
    );
    b.push_str("<table class=\"kv\"><caption>Summary</caption><tbody>");
    let mut row = |name: &str, value: String| {
        let _ = write!(b, "<tr><th scope=\"row\">{name}</th><td>{value}</td></tr>");
    };
    row("Time (UTC)", escape_markup(&clock(r.time_ms)));
    row("Method", escape_markup(&r.method));
    row("Path (as the app got it)", escape_markup(&r.path));
    row("Target", escape_markup(&r.target));
    if let Some(of) = r.replay_of {
        row("Replay of", format!("<a href=\"/requests/{of}\">#{of}</a>"));
    }
    b.push_str("</tbody></table>");
    headers_table(&mut b, "Request headers as the app got them", &r.request_headers);
    b.push_str("</div><div>");
    body_html(&mut b, "Request body", &detail(r)["request"]["body"]);
    b.push_str("</div></div>");
    let note = match (replayable(r), &r.plan) {
        (true, _) => "Sends the request to the app again; the new response shows beside this one.",
        (false, None) => "Cannot replay: the request never reached the app (no target was picked).",
        (false, Some(_)) => "Cannot replay: the request body was not kept whole (raise --inspect-body-bytes).",
    };
    let _ = write!(
        b,
        "<p class=\"actions\"><button id=\"replay\" type=\"button\" data-id=\"{}\"{}>Replay</button> \
         <span id=\"replay-note\">{}</span></p><noscript><p>Replay needs JavaScript, or: \
         <code>curl -X POST -H 'X-Hyco-Replay: 1' http://THIS-PAGE/api/requests/{}/replay</code></p></noscript></section>",
        r.id,
        if replayable(r) { "" } else { " disabled" },
        escape_markup(note),
        r.id,
    );
    b.push_str(
        "<div class=\"cols\"><section id=\"original\" aria-labelledby=\"h-orig\"><h2 id=\"h-orig\">Response</h2>",
    );
    response_html(&mut b, r);
    b.push_str("</section><section id=\"replayed\" aria-labelledby=\"h-rep\" aria-live=\"polite\">");
    match replay {
        Some(p) => {
            let _ = write!(b, "<h2 id=\"h-rep\">Replay <a href=\"/requests/{0}\">#{0}</a></h2>", p.id);
            response_html(&mut b, p);
        }
        None => b.push_str("<h2 id=\"h-rep\">Replay</h2><p>Not replayed yet.</p>"),
    }
    b.push_str("</section></div>");
    page(&format!("{} {} - hyco request inspector", r.method, r.path), &b)
}

fn response_html(b: &mut String, r: &Record) {
    b.push_str("<table class=\"kv\"><caption>Outcome</caption><tbody>");
    let _ = write!(
        b,
        "<tr><th scope=\"row\">Status</th><td class=\"{}\">{}</td></tr>\
         <tr><th scope=\"row\">Duration</th><td>{} ms</td></tr><tr><th scope=\"row\">Size</th><td>{}</td></tr>",
        status_class(r),
        status_text(r),
        r.duration_ms,
        human(r.response_body.total as f64),
    );
    if let Some(e) = &r.error {
        let _ = write!(b, "<tr><th scope=\"row\">Listener's error</th><td>{}</td></tr>", escape_markup(e));
    }
    b.push_str("</tbody></table>");
    headers_table(b, "Response headers", &r.response_headers);
    body_html(b, "Response body", &detail(r)["response"]["body"]);
}

fn headers_table(b: &mut String, caption: &str, headers: &[(String, String)]) {
    let _ = write!(b, "<table class=\"kv\"><caption>{caption}</caption><tbody>");
    if headers.is_empty() {
        b.push_str("<tr><td colspan=\"2\">None</td></tr>");
    }
    for (n, v) in headers {
        let _ = write!(b, "<tr><th scope=\"row\">{}</th><td>{}</td></tr>", escape_markup(n), escape_markup(v));
    }
    b.push_str("</tbody></table>");
}

/// A body as [`body`] describes it.
fn body_html(b: &mut String, caption: &str, v: &Value) {
    let _ = write!(b, "<h3>{caption}</h3>");
    let (total, not_kept) = (v["size"].as_u64().unwrap_or(0), v["not_kept"].as_u64().unwrap_or(0));
    let kind = escape_markup(v["content_type"].as_str().unwrap_or(""));
    match v["kind"].as_str() {
        Some("text" | "json") => {
            let _ = write!(
                b,
                "<pre class=\"body\" tabindex=\"0\">{}</pre>",
                escape_markup(v["text"].as_str().unwrap_or(""))
            );
        }
        Some("binary") => {
            let _ = write!(
                b,
                "<p>Binary, {} of {}. First bytes: <code class=\"hex\">{}</code></p>",
                human(total as f64),
                if kind.is_empty() { "no stated type".to_owned() } else { kind },
                escape_markup(v["hex"].as_str().unwrap_or("")),
            );
        }
        _ => b.push_str("<p>Empty.</p>"),
    }
    if not_kept > 0 {
        let _ = write!(b, "<p class=\"note\">{not_kept} more bytes not kept ({} in all).</p>", human(total as f64));
    }
}

fn page(title: &str, body: &str) -> String {
    PAGE.replace("{{title}}", &escape_markup(title)).replace("{{body}}", body)
}

fn status_text(r: &Record) -> String {
    match (r.status, &r.error) {
        (Some(s), Some(_)) => format!("{s} (listener)"),
        (Some(s), None) => s.to_string(),
        (None, _) => "-".to_owned(),
    }
}

fn status_class(r: &Record) -> &'static str {
    match r.status.unwrap_or(0) / 100 {
        2 | 3 => "ok",
        4 => "warn",
        _ => "bad",
    }
}

/// `ms` since the epoch as `HH:MM:SS.mmm` (UTC).
fn clock(ms: u64) -> String {
    let day = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", day / 3600, day / 60 % 60, day % 60, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_status_class_code_and_path() {
        assert_eq!(Filter::parse("").unwrap(), Filter::default());
        let f = Filter::parse("status=4xx&path=%2Fapi").unwrap();
        assert_eq!((f.status, f.path.as_str()), (Some((4, None)), "/api"));
        assert_eq!(Filter::parse("status=404").unwrap().status, Some((4, Some(404))));
        for bad in ["status=9xx", "status=abc", "status=4x", "status=1000"] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_show_as_text_json_or_binary() {
        let kept = |b: &[u8], total: u64| {
            let mut k = Kept::default();
            k.bytes = b.to_vec();
            k.total = total;
            k
        };
        let ct = |t: &str| vec![("Content-Type".to_owned(), t.to_owned())];
        let v = body(&kept(b"{\"a\":1}", 7), &ct("application/json"));
        assert_eq!((v["kind"].as_str(), v["text"].as_str()), (Some("json"), Some("{\n  \"a\": 1\n}")));
        let given = r#"{"z":[1,{}, []],"a":"x,\"{}:","m":{"k":null}}"#;
        let want = "{\n  \"z\": [\n    1,\n    {},\n    []\n  ],\n  \"a\": \"x,\\\"{}:\",\n  \"m\": {\n    \"k\": null\n  }\n}";
        assert_eq!(indent(given), want, "members in their order, strings untouched");
        let v = body(&kept("héllo".as_bytes(), 100), &[]);
        assert_eq!((v["kind"].as_str(), v["not_kept"].as_u64()), (Some("text"), Some(94)));
        let v = body(&kept(&"é".as_bytes()[..1], 2), &ct("text/plain"));
        assert_eq!(v["kind"], "text", "a prefix cut inside a character is still text");
        let v = body(&kept(&[0, 1, 0xff, 0x89], 4), &ct("image/png"));
        assert_eq!((v["kind"].as_str(), v["hex"].as_str()), (Some("binary"), Some("00 01 ff 89")));
        assert_eq!(body(&kept(b"", 0), &[])["kind"], "empty");
        assert_eq!(clock(3_723_004), "01:02:03.004");
    }

    #[test]
    fn the_list_holds_at_most_its_row_limit_newest_first() {
        use super::super::store::{Limits, Store};
        let store = Store::new(Limits { requests: MAX_LIST_ROWS + 7, body_bytes: 0 });
        let request = crate::protocol::HttpRequest { request_target: Some("/x".into()), ..Default::default() };
        for _ in 0..MAX_LIST_ROWS + 7 {
            store.finish(store.begin(&request, None), 200, None);
        }
        let page = list_page(&store.list(), &Filter::default(), MAX_LIST_ROWS + 7);
        assert_eq!(page.matches("<tr data-id=").count(), MAX_LIST_ROWS);
        assert!(page.contains(&format!("<tr data-id=\"{}\">", MAX_LIST_ROWS + 7)), "the newest is listed");
        assert!(!page.contains("<tr data-id=\"7\">"), "the oldest beyond the limit are not");
        assert!(page.contains(&format!("data-limit=\"{MAX_LIST_ROWS}\"")) && page.contains("/api/requests for all"));
    }
}
