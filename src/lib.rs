//! hyco: reach a TCP port behind NAT through an Azure Relay Hybrid Connections relay,
//! or run that relay yourself.
//!
//! - Pure protocol pieces: [`encoding`], [`secret`], [`sas`], [`connstr`], [`protocol`],
//!   the WebSocket layer [`ws`], and HTTP/1.1 framing for HTTP mode [`http1`].
//! - The relay (`hyco serve`): [`relay::run`].
//! - The clients (`hyco listen`, `hyco connect`): [`client`].
//! - Around them: [`profile`] and [`credentials`] (which relay, which key), [`cli`] and
//!   [`app`] (the commands), [`status`] (the clients' counters and status line), [`net`],
//!   [`local`] and [`fsutil`] (sockets and files), `ipnet` (IP networks, for every allowlist),
//!   `pages` (the small HTTP server of the status page and the request inspector).
#![forbid(unsafe_code)]

pub mod app;
mod backoff;
pub mod cli;
pub mod client;
pub mod connstr;
pub mod credentials;
pub mod encoding;
pub mod error;
pub mod fingerprint;
pub mod fsutil;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod generated;
pub mod http1;
mod ipnet;
pub mod local;
pub mod manage;
pub mod net;
mod pages;
pub mod profile;
pub mod protocol;
pub mod public;
pub mod relay;
pub mod sas;
pub mod secret;
pub mod status;
pub mod up;
pub mod ws;
