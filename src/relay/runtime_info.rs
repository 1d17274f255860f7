//! An HC's runtime information (docs/protocol.md 7.1), as Microsoft's SDKs ask for it with
//! `GetRuntimeInformationAsync`: `GET https://{host}/{hc}?api-version=2016-07` with
//! `X-PROCESS-AT: ServiceBus` and a token in `Authorization`. The answer is an Atom entry
//! whose content is a `HybridConnectionDescription` (creation time, whether senders need a
//! token, the listener count), the fields the SDKs read, in the order their
//! DataContract serializer wants. Such a request is the relay's, never a listener's.

use super::auth::Right;
use super::http_transfer::parse_target;
use super::metrics::Reason;
use super::{Rejection, Relay};
use crate::encoding::escape_markup;
use crate::http1::{self, Request, header};

/// The management API version the SDKs send.
const API_VERSION: &str = "2016-07";
/// The namespace of the entity description.
const MANAGEMENT_NAMESPACE: &str = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect";

/// Whether `req` asks for an HC's runtime information rather than being an HTTP-mode
/// request: a GET with `X-PROCESS-AT` and an `api-version` query parameter.
pub(super) fn asked(req: &Request) -> bool {
    let query = req.target.split_once('?').map_or("", |(_, q)| q);
    req.method == "GET"
        && header(&req.headers, "X-PROCESS-AT").is_some()
        && query.split('&').any(|p| p.split('=').next() == Some("api-version"))
}

impl Relay {
    /// The whole HTTP response to a runtime-information request, or why not: 400 for a
    /// path that names nothing, 401/403 for a token that does not cover the HC (any right
    /// on it will do), 404 for an HC the relay does not have.
    pub(super) fn runtime_info(&self, req: &Request, host: &str) -> Result<String, Rejection> {
        let target = parse_target(&req.target).map_err(|why| Rejection::new(400, Reason::BadRequest, why))?;
        let (names, more) = target.names();
        let not_found = || Rejection::new(404, Reason::NotFound, "Endpoint does not exist");
        if more || names.is_empty() {
            return Err(not_found());
        }
        let path = names.join("/");
        let info = self.registry.hc_info(&path).ok_or_else(not_found)?;
        let token = header(&req.headers, "Authorization")
            .or_else(|| header(&req.headers, crate::protocol::TOKEN_HEADER))
            .or(target.token.as_deref());
        let listen = self.registry.check_right(&path, Right::Listen, token);
        if listen.is_err() {
            self.registry.check_right(&path, Right::Send, token)?;
        }
        let created = crate::protocol::rfc3339(info.created);
        let url = format!("https://{}/{}?api-version={API_VERSION}", escape_markup(host), escape_markup(&path));
        let body = format!(
            "<entry xmlns=\"http://www.w3.org/2005/Atom\"><id>{url}</id><title type=\"text\">{name}</title>\
             <published>{created}</published><updated>{created}</updated>\
             <link rel=\"self\" href=\"{url}\"/><content type=\"application/xml\">\
             <HybridConnectionDescription xmlns=\"{MANAGEMENT_NAMESPACE}\" xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">\
             <CreatedAt>{created}</CreatedAt><UpdatedAt>{created}</UpdatedAt>\
             <RequiresClientAuthorization>{auth}</RequiresClientAuthorization>\
             <ListenerCount>{listeners}</ListenerCount></HybridConnectionDescription></content></entry>",
            name = escape_markup(&path),
            auth = info.requires_client_authorization,
            listeners = info.listeners,
        );
        let headers = [
            ("Content-Type".to_owned(), "application/atom+xml;type=entry;charset=utf-8".to_owned()),
            ("Content-Length".to_owned(), body.len().to_string()),
            ("Connection".to_owned(), "close".to_owned()),
        ];
        Ok(http1::head("HTTP/1.1 200 OK", &headers) + &body)
    }
}
