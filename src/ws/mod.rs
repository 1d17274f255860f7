//! A small RFC 6455 layer for the data path: frame codec, handshakes in both roles, and
//! frame-level streams that keep each direction independent.
//!
//! The control channel uses tokio-tungstenite on top of [`handshake`]; tunnels use
//! [`stream`], because tungstenite answers a Close frame at once, which would cut off the
//! other direction of a half-closed tunnel. HTTP mode's rendezvous uses [`message`], whole
//! messages over the same frame streams; a public UDP port's tunnel, [`datagram`], one
//! datagram per message.

pub mod chunk;
pub mod datagram;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod pump;
pub mod stream;
