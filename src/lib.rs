//! hyco: reach a TCP port behind NAT through an Azure Relay Hybrid Connections relay,
//! or run that relay yourself.
//!
//! Modules are added as they land; see the README for the architecture.
#![forbid(unsafe_code)]
pub mod connstr;
pub mod encoding;
pub mod fsutil;
pub mod protocol;
pub mod relay;
pub mod sas;
pub mod secret;
pub mod ws;
