//! What the request inspector never shows: the values of credential headers and of the
//! relay token in a query, replaced by [`MASK`] with the name kept. Pure.

use crate::encoding::decode_component;

/// What a masked value shows.
pub(crate) const MASK: &str = "•••";

/// Headers whose values are credentials (lower case); any `sb-hc-*` too.
const SECRET_HEADERS: [&str; 6] =
    ["authorization", "servicebusauthorization", "cookie", "set-cookie", "proxy-authorization", "sb-hc-token"];

/// Whether a header's value must not be shown.
pub(crate) fn secret_header(name: &str) -> bool {
    let lower = name.trim().to_ascii_lowercase();
    SECRET_HEADERS.contains(&lower.as_str()) || lower.starts_with("sb-hc-")
}

/// `headers` with credential values masked.
pub(crate) fn headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .map(|(n, v)| (n.to_owned(), if secret_header(n) { MASK.to_owned() } else { v.to_owned() }))
        .collect()
}

/// A request target with the value of each `sb-hc-token` query parameter (its name
/// percent-decoded, any case) masked.
pub(crate) fn target(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else { return target.to_owned() };
    let parts: Vec<String> = query
        .split('&')
        .map(|part| {
            let (name, value) = part.split_once('=').map_or((part, None), |(n, v)| (n, Some(v)));
            let decoded = decode_component(name, true).unwrap_or_else(|_| name.to_owned());
            match value {
                Some(_) if decoded.trim().eq_ignore_ascii_case("sb-hc-token") => format!("{name}={MASK}"),
                _ => part.to_owned(),
            }
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_names_kept() {
        let given = [
            ("Authorization", "Bearer SECRET"),
            ("ServiceBusAuthorization", "SharedAccessSignature sr=x"),
            ("cookie", "a=SECRET"),
            ("Set-Cookie", "b=SECRET"),
            ("Proxy-Authorization", "Basic SECRET"),
            ("sb-hc-token", "SECRET"),
            ("SB-HC-Whatever", "SECRET"),
            ("X-App", "shown"),
        ];
        let masked = headers(given);
        assert_eq!(masked.len(), given.len());
        for ((n, v), (gn, _)) in masked.iter().zip(given) {
            assert_eq!(n, gn, "name kept");
            assert_eq!(v == MASK, gn != "X-App", "{n}: {v}");
        }
        assert_eq!(target("/a?x=1&sb-hc-token=SECRET&y"), format!("/a?x=1&sb-hc-token={MASK}&y"));
        assert_eq!(target("/a?SB%2DHC%2DToken=SECRET"), format!("/a?SB%2DHC%2DToken={MASK}"));
        assert_eq!(target("/a?sb-hc-tokens=shown"), "/a?sb-hc-tokens=shown");
        assert_eq!(target("/a"), "/a");
    }
}
