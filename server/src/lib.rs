//! cairn-server: the node driver around cairn-core, its storage, peer transport and client API.
