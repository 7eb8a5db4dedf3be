//! WAL record framing: how one value is laid out on disk and checked.
//!
//! A frame is a 13-byte header followed by the payload:
//!
//! ```text
//! payload_length: u32 LE | kind: u8 | payload_crc: u32 LE | header_crc: u32 LE | payload
//! ```
//!
//! `payload_crc` is crc32c over the kind byte and the payload; `header_crc`
//! is crc32c over the first nine header bytes. The header has its own
//! checksum so a flipped bit in the length can never make a record in the
//! middle of the log look like a write torn at the end of the file: a frame
//! whose (checked) length runs past the end of the file is genuinely
//! incomplete. Checksums are computed when writing and verified when reading
//! (pair assertions, TigerBeetle-style).
//!
//! Payloads are bincode (fixed-width integers, little endian) of the types in
//! [`WalRecord`].

use cairn_core::raft::{Entry, HardState, Index, Term};
use serde::{Deserialize, Serialize};

use crate::storage::error::StorageError;

/// Bytes of a frame header.
pub const RECORD_HEADER_BYTES: usize = 13;

/// The largest payload one record may carry (one log entry, in practice).
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 128 * 1024 * 1024;

/// Identifies a segment file as Cairn's ("CAIRNWAL").
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"CAIRNWAL");

/// The on-disk format version written in every segment header.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;

/// What a frame's payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A [`SegmentHeader`]: the first record of every segment.
    SegmentHeader = 1,
    /// A Raft [`HardState`].
    HardState = 2,
    /// A Raft [`Entry`].
    Entry = 3,
    /// A [`SnapshotMarker`] for a snapshot received from the leader: the log
    /// before it is replaced by the snapshot.
    SnapshotInstalled = 4,
    /// A [`SnapshotMarker`] for a local compaction: entries up to its index
    /// are covered by the snapshot; later entries stay.
    Compacted = 5,
    /// The member metadata blob (only in the metadata file).
    Metadata = 6,
    /// A [`BatchStart`]: opens the records of one Ready, written with one
    /// append and one sync.
    BatchStart = 7,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<RecordKind> {
        match byte {
            1 => Some(RecordKind::SegmentHeader),
            2 => Some(RecordKind::HardState),
            3 => Some(RecordKind::Entry),
            4 => Some(RecordKind::SnapshotInstalled),
            5 => Some(RecordKind::Compacted),
            6 => Some(RecordKind::Metadata),
            7 => Some(RecordKind::BatchStart),
            _ => None,
        }
    }
}

/// The first record of a segment: it names the segment, so a file renamed or
/// copied into the wrong place is detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    /// [`SEGMENT_MAGIC`].
    pub magic: u64,
    /// [`SEGMENT_FORMAT_VERSION`].
    pub format_version: u32,
    /// The segment's sequence number (1 for the first segment ever).
    pub sequence: u64,
    /// The log index the WAL expected next when the segment was created.
    pub first_index: Index,
}

/// Points at a snapshot file by its index and term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMarker {
    /// The snapshot's last included index.
    pub index: Index,
    /// The term of the entry at `index`.
    pub term: Term,
}

/// Opens a batch: the records of one Ready, written with one append and made
/// durable with one sync. Knowing where the batch ends lets recovery tell a
/// write torn anywhere inside the last batch (the file ends with the batch)
/// from damage to a batch that later batches followed (corruption).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStart {
    /// The bytes of the batch's records after this one.
    pub bytes: u64,
}

/// A decoded WAL record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalRecord {
    /// See [`RecordKind::SegmentHeader`].
    SegmentHeader(SegmentHeader),
    /// See [`RecordKind::HardState`].
    HardState(HardState),
    /// See [`RecordKind::Entry`].
    Entry(Entry),
    /// See [`RecordKind::SnapshotInstalled`].
    SnapshotInstalled(SnapshotMarker),
    /// See [`RecordKind::Compacted`].
    Compacted(SnapshotMarker),
    /// See [`RecordKind::Metadata`].
    Metadata(Vec<u8>),
    /// See [`RecordKind::BatchStart`].
    BatchStart(BatchStart),
}

impl WalRecord {
    /// Decodes a payload whose checksums have been verified. An error here
    /// is corruption (the checksums matched, so it is not a torn write).
    pub fn decode(kind: RecordKind, payload: &[u8]) -> Result<WalRecord, String> {
        let describe = |error: bincode::Error| format!("undecodable {kind:?} record: {error}");
        Ok(match kind {
            RecordKind::SegmentHeader => {
                WalRecord::SegmentHeader(bincode::deserialize(payload).map_err(describe)?)
            }
            RecordKind::HardState => {
                WalRecord::HardState(bincode::deserialize(payload).map_err(describe)?)
            }
            RecordKind::Entry => WalRecord::Entry(bincode::deserialize(payload).map_err(describe)?),
            RecordKind::SnapshotInstalled => {
                WalRecord::SnapshotInstalled(bincode::deserialize(payload).map_err(describe)?)
            }
            RecordKind::Compacted => {
                WalRecord::Compacted(bincode::deserialize(payload).map_err(describe)?)
            }
            RecordKind::Metadata => WalRecord::Metadata(payload.to_vec()),
            RecordKind::BatchStart => {
                WalRecord::BatchStart(bincode::deserialize(payload).map_err(describe)?)
            }
        })
    }
}

/// Appends one frame holding `value` (bincode) to `buffer`.
pub fn encode_record<T: Serialize + ?Sized>(
    kind: RecordKind,
    value: &T,
    buffer: &mut Vec<u8>,
) -> Result<(), StorageError> {
    let start = buffer.len();
    buffer.resize(start + RECORD_HEADER_BYTES, 0);
    if let Err(error) = bincode::serialize_into(&mut *buffer, value) {
        // Serializing plain data into a Vec cannot fail; if it does, it is a bug.
        panic!("bincode failed to encode a {kind:?} record: {error}");
    }
    finish_frame(kind, buffer, start)
}

/// Appends one frame holding `payload` as is to `buffer`.
pub fn encode_raw_record(
    kind: RecordKind,
    payload: &[u8],
    buffer: &mut Vec<u8>,
) -> Result<(), StorageError> {
    let start = buffer.len();
    buffer.resize(start + RECORD_HEADER_BYTES, 0);
    buffer.extend_from_slice(payload);
    finish_frame(kind, buffer, start)
}

/// Fills in the header of the frame starting at `start`, whose payload runs
/// to the end of `buffer`.
fn finish_frame(kind: RecordKind, buffer: &mut Vec<u8>, start: usize) -> Result<(), StorageError> {
    let payload_bytes = buffer.len() - start - RECORD_HEADER_BYTES;
    if payload_bytes > RECORD_PAYLOAD_BYTES_MAX {
        buffer.truncate(start);
        return Err(StorageError::RecordTooLarge {
            bytes: payload_bytes as u64,
            bytes_max: RECORD_PAYLOAD_BYTES_MAX as u64,
        });
    }
    let payload_length = u32::try_from(payload_bytes).expect("payload bound fits in u32");
    let kind_byte = kind as u8;
    let payload_crc = crc32c::crc32c_append(
        crc32c::crc32c(&[kind_byte]),
        &buffer[start + RECORD_HEADER_BYTES..],
    );
    let header = &mut buffer[start..start + RECORD_HEADER_BYTES];
    header[0..4].copy_from_slice(&payload_length.to_le_bytes());
    header[4] = kind_byte;
    header[5..9].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&header[0..9]);
    header[9..13].copy_from_slice(&header_crc.to_le_bytes());
    if cfg!(debug_assertions) {
        // Pair assertion: what we write must read back as written.
        match decode_frame(buffer, start) {
            Frame::Complete {
                kind: decoded, end, ..
            } => {
                assert_eq!(decoded, kind, "frame kind round trip");
                assert_eq!(
                    end,
                    buffer.len(),
                    "frame end {end} != buffer end {}",
                    buffer.len()
                );
            }
            other => panic!("freshly encoded {kind:?} frame does not decode: {other:?}"),
        }
    }
    Ok(())
}

/// The outcome of reading one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole frame with valid checksums.
    Complete {
        /// Its kind.
        kind: RecordKind,
        /// Its payload.
        payload: &'a [u8],
        /// The offset just past the frame.
        end: usize,
    },
    /// The bytes stop before the frame does: what a torn write leaves.
    Incomplete {
        /// What is missing.
        reason: String,
    },
    /// The bytes are a whole but damaged frame, or not a frame at all.
    Invalid {
        /// What is wrong.
        reason: String,
    },
}

/// Reads the frame at `offset` of `bytes`.
pub fn decode_frame(bytes: &[u8], offset: usize) -> Frame<'_> {
    let remaining = bytes.len().saturating_sub(offset);
    if remaining < RECORD_HEADER_BYTES {
        return Frame::Incomplete {
            reason: format!("partial record header ({remaining} of {RECORD_HEADER_BYTES} bytes)"),
        };
    }
    let header = &bytes[offset..offset + RECORD_HEADER_BYTES];
    let read_u32 = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let header_crc = read_u32(9);
    let computed_header_crc = crc32c::crc32c(&header[0..9]);
    if header_crc != computed_header_crc {
        return Frame::Invalid {
            reason: format!(
                "record header checksum mismatch (stored {header_crc:#010x}, \
                 computed {computed_header_crc:#010x})"
            ),
        };
    }
    let payload_length = read_u32(0) as usize;
    let Some(kind) = RecordKind::from_byte(header[4]) else {
        return Frame::Invalid {
            reason: format!("unknown record kind {}", header[4]),
        };
    };
    if payload_length > RECORD_PAYLOAD_BYTES_MAX {
        return Frame::Invalid {
            reason: format!(
                "record length {payload_length} exceeds the bound of {RECORD_PAYLOAD_BYTES_MAX}"
            ),
        };
    }
    let payload_start = offset + RECORD_HEADER_BYTES;
    if remaining - RECORD_HEADER_BYTES < payload_length {
        return Frame::Incomplete {
            reason: format!(
                "record of {payload_length} payload bytes runs past the end of the file \
                 ({} present)",
                remaining - RECORD_HEADER_BYTES
            ),
        };
    }
    let payload = &bytes[payload_start..payload_start + payload_length];
    let payload_crc = read_u32(5);
    let computed_payload_crc = crc32c::crc32c_append(crc32c::crc32c(&[header[4]]), payload);
    if payload_crc != computed_payload_crc {
        return Frame::Invalid {
            reason: format!(
                "{kind:?} record checksum mismatch (stored {payload_crc:#010x}, \
                 computed {computed_payload_crc:#010x})"
            ),
        };
    }
    Frame::Complete {
        kind,
        payload,
        end: payload_start + payload_length,
    }
}

/// The offset of the first complete, valid frame of `kind` that starts after
/// `offset`, if any. Used to tell a torn tail (no later batch) from
/// corruption in the middle of the log (a valid batch follows the damage).
pub fn next_valid_frame_after(bytes: &[u8], offset: usize, kind: RecordKind) -> Option<usize> {
    let last_start = bytes.len().checked_sub(RECORD_HEADER_BYTES)?;
    (offset + 1..=last_start).find(|&start| {
        matches!(decode_frame(bytes, start), Frame::Complete { kind: found, .. } if found == kind)
    })
}

#[cfg(test)]
mod tests {
    use cairn_core::raft::EntryKind;

    use super::*;

    fn entry(index: u64) -> Entry {
        Entry {
            term: Term(2),
            index: Index(index),
            kind: EntryKind::Normal,
            data: vec![7; 10],
        }
    }

    #[test]
    fn round_trip() {
        let mut buffer = Vec::new();
        encode_record(RecordKind::Entry, &entry(5), &mut buffer).unwrap();
        let Frame::Complete { kind, payload, end } = decode_frame(&buffer, 0) else {
            panic!("not complete");
        };
        assert_eq!(end, buffer.len());
        assert_eq!(
            WalRecord::decode(kind, payload).unwrap(),
            WalRecord::Entry(entry(5))
        );
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buffer = Vec::new();
        encode_record(RecordKind::Entry, &entry(5), &mut buffer).unwrap();
        for byte in 0..buffer.len() {
            for bit in 0..8 {
                let mut damaged = buffer.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    !matches!(decode_frame(&damaged, 0), Frame::Complete { .. }),
                    "flip of bit {bit} at byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn every_strict_prefix_is_incomplete_or_invalid() {
        let mut buffer = Vec::new();
        encode_record(RecordKind::HardState, &HardState::default(), &mut buffer).unwrap();
        for len in 0..buffer.len() {
            let frame = decode_frame(&buffer[..len], 0);
            assert!(
                matches!(frame, Frame::Incomplete { .. }),
                "prefix {len}: {frame:?}"
            );
        }
    }

    #[test]
    fn next_valid_frame_is_found_after_damage() {
        let mut buffer = Vec::new();
        encode_record(RecordKind::Entry, &entry(1), &mut buffer).unwrap();
        let second = buffer.len();
        encode_record(RecordKind::Entry, &entry(2), &mut buffer).unwrap();
        buffer[20] ^= 1;
        assert_eq!(
            next_valid_frame_after(&buffer, 0, RecordKind::Entry),
            Some(second)
        );
        assert_eq!(
            next_valid_frame_after(&buffer, 0, RecordKind::HardState),
            None
        );
        assert_eq!(
            next_valid_frame_after(&buffer, second, RecordKind::Entry),
            None
        );
    }
}
