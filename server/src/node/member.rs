//! Members: who is in the cluster, under which name and URLs, and how
//! member and cluster IDs are derived (as etcd does, from peer URLs and the
//! cluster token, with a stable hash instead of sha1).

use std::collections::BTreeMap;

use cairn_core::raft::NodeId;

use super::handle::Member;

/// The member table, by member ID. It is replicated: every member applies
/// the same ConfChange entries and so holds the same table.
pub type MemberTable = BTreeMap<u64, Member>;

/// FNV-1a over `bytes`, continuing from `hash`.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// splitmix64's finalizer: spreads FNV's weak high bits.
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// A stable 64-bit hash of a sequence of byte strings (length-prefixed, so
/// `["ab", "c"]` and `["a", "bc"]` differ). Never 0.
pub fn stable_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    let mut hash = OFFSET_BASIS;
    for part in parts {
        hash = fnv1a(hash, &(part.len() as u64).to_le_bytes());
        hash = fnv1a(hash, part);
    }
    match mix(hash) {
        0 => 1,
        hash => hash,
    }
}

/// The member ID of a member with these peer URLs in the cluster with this
/// token: a hash of the sorted URLs and the token (etcd: sha1 of the same).
pub fn member_id_for(peer_urls: &[String], cluster_token: &str) -> NodeId {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let parts = urls
        .into_iter()
        .map(str::as_bytes)
        .chain(std::iter::once(cluster_token.as_bytes()));
    NodeId(stable_hash(parts))
}

/// The cluster ID of the cluster with this token. etcd hashes the founding
/// members' IDs instead, and a joining member fetches the ID from its
/// peers; deriving it from the token alone lets a joining member compute
/// it from its flags. As with etcd, each cluster needs its own token.
pub fn cluster_id_for(cluster_token: &str) -> u64 {
    stable_hash([b"cairn-cluster".as_slice(), cluster_token.as_bytes()])
}

/// The peer URLs of every member but `local`, for the transport.
pub fn peer_urls_by_member(members: &MemberTable, local: NodeId) -> BTreeMap<NodeId, Vec<String>> {
    members
        .values()
        .filter(|member| member.id != local.0)
        .map(|member| (NodeId(member.id), member.peer_urls.clone()))
        .collect()
}

/// The member (other than `except`) already using one of `peer_urls`.
pub fn member_using_peer_url<'a>(
    members: &'a MemberTable,
    peer_urls: &[String],
    except: Option<u64>,
) -> Option<&'a Member> {
    members.values().find(|member| {
        Some(member.id) != except && member.peer_urls.iter().any(|url| peer_urls.contains(url))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_depend_on_urls_and_token_not_url_order() {
        let urls = vec!["http://a:2380".to_string(), "http://b:2380".to_string()];
        let reversed: Vec<String> = urls.iter().rev().cloned().collect();
        assert_eq!(member_id_for(&urls, "t"), member_id_for(&reversed, "t"));
        assert_ne!(member_id_for(&urls, "t"), member_id_for(&urls, "u"));
        assert_ne!(member_id_for(&urls[..1], "t"), member_id_for(&urls, "t"));
        assert_ne!(member_id_for(&urls, "t").0, 0);
    }

    #[test]
    fn the_hash_is_pinned() {
        // Member IDs are persisted and exchanged: the hash must never change.
        assert_eq!(stable_hash([b"cairn".as_slice()]), 0x8a29_6b16_5133_c96c);
        let pinned = member_id_for(&["http://127.0.0.1:2380".to_string()], "etcd-cluster");
        assert_eq!(pinned, NodeId(0x5e12_0a6a_cbe6_505a));
        assert_ne!(
            stable_hash([b"ab".as_slice(), b"c".as_slice()]),
            stable_hash([b"a".as_slice(), b"bc".as_slice()])
        );
    }

    #[test]
    fn cluster_ids_depend_on_the_token() {
        assert_eq!(cluster_id_for("a"), cluster_id_for("a"));
        assert_ne!(cluster_id_for("a"), cluster_id_for("b"));
        assert_ne!(cluster_id_for("a"), member_id_for(&[], "a").0);
    }
}
