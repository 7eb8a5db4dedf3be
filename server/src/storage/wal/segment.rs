//! WAL segments: the files the log is split into, and how one is read back.
//!
//! A segment is named `<sequence>-<first index>.wal` (both 16 hex digits, so
//! names sort in log order) and starts with a [`SegmentHeader`] record that
//! repeats both numbers. Segments are written one after the other; a segment
//! is complete and synced before the next one is created, so only the last
//! segment can end in a torn write.
//!
//! Reading a segment tells a torn tail from corruption:
//! - a frame cut short by the end of the file (partial header, or a checked
//!   length running past the end) is torn;
//! - a damaged frame (checksum mismatch, zero bytes) with no valid frame
//!   anywhere after it is torn too: a write was cut and the file system kept
//!   garbage or zeros for the rest;
//! - a damaged frame with a valid frame after it, or any damage in a segment
//!   that is not the last, is corruption and is refused.
//!
//! NB: a bit flip in the very last record of the last segment is
//! indistinguishable from a torn write and is truncated with a warning. It is
//! never applied; but if that record had been acknowledged, it is lost.

use std::path::Path;

use cairn_core::raft::Index;

use super::record::{
    decode_frame, next_valid_frame_after, Frame, SegmentHeader, WalRecord, SEGMENT_FORMAT_VERSION,
    SEGMENT_MAGIC,
};
use crate::storage::error::StorageError;

/// The default size at which the WAL starts a new segment.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 64 * 1024 * 1024;

/// The file-name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".wal";

/// A segment's identity, as in its file name and header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    /// 1 for the first segment ever written; consecutive after that.
    pub sequence: u64,
    /// The log index the WAL expected next when the segment was created.
    pub first_index: Index,
}

impl SegmentName {
    /// The segment's file name.
    pub fn file_name(&self) -> String {
        format!(
            "{:016x}-{:016x}{SEGMENT_SUFFIX}",
            self.sequence, self.first_index.0
        )
    }

    /// Parses a file name written by [`SegmentName::file_name`].
    pub fn parse(file_name: &str) -> Option<SegmentName> {
        let stem = file_name.strip_suffix(SEGMENT_SUFFIX)?;
        let (sequence, first_index) = stem.split_once('-')?;
        if sequence.len() != 16 || first_index.len() != 16 {
            return None;
        }
        Some(SegmentName {
            sequence: u64::from_str_radix(sequence, 16).ok()?,
            first_index: Index(u64::from_str_radix(first_index, 16).ok()?),
        })
    }

    /// The header record this segment must start with.
    pub fn header(&self) -> SegmentHeader {
        SegmentHeader {
            magic: SEGMENT_MAGIC,
            format_version: SEGMENT_FORMAT_VERSION,
            sequence: self.sequence,
            first_index: self.first_index,
        }
    }
}

/// Where a torn tail starts and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The offset of the first byte to cut.
    pub offset: u64,
    /// What was found there.
    pub reason: String,
}

/// The records of one segment.
#[derive(Debug)]
pub struct ScannedSegment {
    /// Every valid record after the header, with its offset.
    pub records: Vec<(u64, WalRecord)>,
    /// The length of the valid prefix of the file.
    pub valid_bytes: u64,
    /// Set when the file ends in a torn write (only for the last segment).
    pub torn_tail: Option<TornTail>,
}

/// Reads the segment `name` at `path` from `bytes`. `is_last` says whether
/// it is the last segment, the only one allowed a torn tail.
pub fn scan_segment(
    path: &Path,
    name: SegmentName,
    bytes: &[u8],
    is_last: bool,
) -> Result<ScannedSegment, StorageError> {
    let corrupted = |offset: usize, reason: String| StorageError::Corrupted {
        segment: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut records = Vec::new();
    let mut offset = 0;
    let mut torn_tail = None;
    while offset < bytes.len() {
        let (kind, payload, end) = match decode_frame(bytes, offset) {
            Frame::Complete { kind, payload, end } => (kind, payload, end),
            Frame::Incomplete { reason } | Frame::Invalid { reason } => {
                if !is_last {
                    return Err(corrupted(
                        offset,
                        format!("{reason} in a segment that is not the last"),
                    ));
                }
                if let Some(next) = next_valid_frame_after(bytes, offset) {
                    return Err(corrupted(
                        offset,
                        format!("{reason}, followed by a valid record at offset {next}"),
                    ));
                }
                torn_tail = Some(TornTail {
                    offset: offset as u64,
                    reason,
                });
                break;
            }
        };
        let record =
            WalRecord::decode(kind, payload).map_err(|reason| corrupted(offset, reason))?;
        match (&record, offset) {
            (WalRecord::SegmentHeader(header), 0) => {
                if *header != name.header() {
                    return Err(corrupted(
                        0,
                        format!("segment header {header:?} does not match the file name {name:?}"),
                    ));
                }
            }
            (_, 0) => {
                return Err(corrupted(
                    0,
                    format!("segment starts with a {kind:?} record, not a header"),
                ));
            }
            (WalRecord::SegmentHeader(_) | WalRecord::Metadata(_), _) => {
                return Err(corrupted(
                    offset,
                    format!("unexpected {kind:?} record inside a segment"),
                ));
            }
            _ => records.push((offset as u64, record)),
        }
        offset = end;
    }
    let valid_bytes = torn_tail
        .as_ref()
        .map_or(bytes.len() as u64, |torn| torn.offset);
    debug_assert!(
        torn_tail.is_none() || is_last,
        "torn tail accepted in segment {} that is not the last",
        path.display()
    );
    Ok(ScannedSegment {
        records,
        valid_bytes,
        torn_tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_in_log_order() {
        let first = SegmentName {
            sequence: 2,
            first_index: Index(10),
        };
        let second = SegmentName {
            sequence: 10,
            first_index: Index(300),
        };
        assert_eq!(SegmentName::parse(&first.file_name()), Some(first));
        assert_eq!(first.file_name(), "0000000000000002-000000000000000a.wal");
        assert!(first.file_name() < second.file_name());
        assert_eq!(
            SegmentName::parse("0000000000000002-000000000000000a.tmp"),
            None
        );
        assert_eq!(SegmentName::parse("2-10.wal"), None);
    }
}
