//! hyco: reach a TCP port behind NAT through an Azure Relay Hybrid Connections relay,
//! or run that relay yourself.
//!
//! Modules are added as they land; see the README for the architecture.
#![forbid(unsafe_code)]
