//! The request inspector's replay: a recorded request sent to its target once more, the
//! head as the app got it the first time and the kept body, and what comes back recorded
//! as a new entry. Calls the app as HTTP mode does ([`super::super::http_local`]); never
//! the relay.

use std::sync::Arc;

use super::super::http::{HttpEnv, local_head};
use super::super::http_local::{ErrorAnswer, Source, call_local, error_answer, read_local};
use super::super::http_pool::LocalConn;
use super::super::target::connect_target;
use super::store::{Capture, Record, ReplayPlan, Store};
use crate::http1::{self, BodyReader};
use crate::ws::message::PIECE;

/// Sends a recorded request to its target once more (the inspector's replay): the head
/// as the app got it the first time and the kept body, on a fresh connection (one the
/// app may have closed while idle would fail for nothing). What comes back is stored as
/// a new record, a replay of `of`.
pub(super) async fn replay(env: &HttpEnv, store: &Store, plan: &ReplayPlan, body: &[u8], of: u64) -> Arc<Record> {
    let mut capture = store.begin(&plan.request, Some(of));
    match replay_exchange(env, plan, body, &mut capture).await {
        Ok(status) => store.finish(capture, status, None),
        Err(f) => store.finish(capture, f.status, Some(f.text)),
    }
}

async fn replay_exchange(env: &HttpEnv, plan: &ReplayPlan, body: &[u8], c: &mut Capture) -> Result<u16, ErrorAnswer> {
    let length = (plan.had_body || !body.is_empty()).then_some(body.len() as u64);
    let head = local_head(&plan.request, &plan.target, &plan.path, length, false)?;
    c.sent(&plan.request, &plan.target, &plan.path, &head, length.is_some());
    c.request_body().push(body);
    let local = connect_target(&plan.target, env.connect_timeout).await.map_err(|(s, t)| error_answer(s, t))?;
    let mut conn = LocalConn::new(local);
    let mut source = if length.is_some() { Source::Inline(body.to_vec()) } else { Source::None };
    let (response, _) = call_local(&mut conn, &head, &mut source, length, None).await.map_err(|f| f.answer)?;
    let head_request = plan.request.method.as_deref() == Some("HEAD");
    let framing = http1::response_framing(response.status, head_request, &response.headers)
        .map_err(|e| error_answer(502, format!("Bad response from the local server: {e}")))?;
    c.answered(response.status, &response.headers);
    let mut reader = BodyReader::new(framing);
    let mut buf = vec![0; PIECE];
    while !reader.is_done() {
        let n = read_local(&mut reader, &mut conn.reader, &mut buf).await?;
        if n == 0 {
            break;
        }
        c.response_body().push(&buf[..n]);
    }
    Ok(response.status)
}
