//! Peer-to-peer transport: framed bincode over TCP with a cluster handshake.
