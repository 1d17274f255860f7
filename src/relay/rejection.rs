//! The relay's one way of saying no: a [`Rejection`] carries the HTTP status the peer
//! gets, the reason it is counted under (`hyco_rejected_handshakes_total{reason}`) and a
//! text, and is written either as the answer to a WebSocket handshake or as an HTTP-mode
//! error with Azure's JSON body. Counting it is the caller's part ([`super::Metrics`]).

use std::borrow::Cow;
use std::fmt;

use super::metrics::Reason;
use crate::http1;
use crate::protocol;

/// A rejection by the relay (or, passed on, by a listener).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    status: u16,
    reason: Reason,
    text: Cow<'static, str>,
}

impl Rejection {
    pub(crate) fn new(status: u16, reason: Reason, text: impl Into<Cow<'static, str>>) -> Self {
        Self { status, reason, text: text.into() }
    }

    /// A waiting sender or request when the relay shuts down.
    pub(crate) fn shutting_down() -> Self {
        Self::new(503, Reason::ShuttingDown, "Relay shutting down")
    }

    /// The HTTP status the peer gets.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason it is counted under.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// What the peer is told.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The answer to a WebSocket handshake: the status with the text, and with
    /// `tracking_id` as Azure's answers carry one (a listener's own text goes as given).
    pub(crate) fn handshake_response(&self, tracking_id: Option<&str>) -> String {
        match tracking_id {
            Some(id) => http1::error_response(self.status, &protocol::status_text(&self.text, id)),
            None => http1::error_response(self.status, &self.text),
        }
    }

    /// The answer to an HTTP-mode request:
    /// `{"error":{"code":…,"message":"… TrackingId:…, Timestamp:…"}}`, with a
    /// `Connection` header of `connection` (`close`, or `keep-alive` to HTTP/1.0) if given.
    pub(crate) fn http_response(&self, tracking_id: &str, connection: Option<&str>) -> String {
        // A plain HTTP caller (curl, a browser) is most likely missing a token: say how to
        // present one, before the tracking suffix.
        let text = match self.status {
            401 => Cow::Owned(format!("{}. {TOKEN_HINT}", self.text.trim_end_matches('.'))),
            _ => Cow::Borrowed(self.text.as_ref()),
        };
        let body = serde_json::json!({
            "error": { "code": error_code(self.status), "message": protocol::status_text(&text, tracking_id) }
        })
        .to_string();
        let mut headers = vec![
            ("Content-Type".to_owned(), "application/json; charset=utf-8".to_owned()),
            ("Content-Length".to_owned(), body.len().to_string()),
        ];
        if let Some(c) = connection {
            headers.push(("Connection".to_owned(), c.to_owned()));
        }
        http1::head(&format!("HTTP/1.1 {} {}", self.status, http1::reason(self.status)), &headers) + &body
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

/// How an HTTP-mode caller presents a token, in a 401's body.
const TOKEN_HINT: &str = "Present a SAS token with the Send right in the ServiceBusAuthorization or Authorization \
     header, or in the sb-hc-token query parameter (`hyco token HC --rights send` mints one)";

/// Azure's error codes for the statuses the relay itself answers.
fn error_code(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "EndpointNotFound",
        408 => "RequestTimeout",
        413 => "PayloadTooLarge",
        431 => "RequestHeaderFieldsTooLarge",
        502 => "BadGateway",
        503 => "ServerBusy",
        504 => "GatewayTimeout",
        _ => "InternalServerError",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_are_json_with_a_tracking_id() {
        let r = Rejection::new(504, Reason::AcceptTimeout, "The listener did not answer within 60 s");
        let text = r.http_response("t-1", Some("close"));
        assert!(text.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "GatewayTimeout");
        assert!(json["error"]["message"].as_str().unwrap().contains("TrackingId:t-1"));
    }

    #[test]
    fn a_401_body_says_how_to_present_a_token() {
        let text = Rejection::new(401, Reason::Unauthorized, "Missing token").http_response("t-3", None);
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("Missing token. Present a SAS token"), "{message}");
        assert!(message.contains("ServiceBusAuthorization") && message.contains("sb-hc-token"), "{message}");
        assert!(message.contains("TrackingId:t-3"), "{message}");
        // Other statuses, and handshake answers, are as they were.
        let r = Rejection::new(404, Reason::NotFound, "No such hybrid connection");
        assert!(!r.http_response("t", None).contains("Present a SAS token"));
        let r = Rejection::new(401, Reason::Unauthorized, "Missing token");
        assert!(!r.handshake_response(Some("t")).contains("Present"));
    }

    #[test]
    fn handshake_answers_carry_the_tracking_id_unless_passed_on() {
        let r = Rejection::new(404, Reason::NoListener, "No listener");
        assert!(r.handshake_response(Some("t-2")).starts_with("HTTP/1.1 404 No listener"));
        assert!(r.handshake_response(Some("t-2")).contains("TrackingId:t-2"));
        assert_eq!(r.handshake_response(None), http1::error_response(404, "No listener"));
    }
}
