//! WAL segments: the files the log is split into, and how one is read back.
//!
//! A segment is named `<sequence>-<first index>.wal` (both 16 hex digits, so
//! names sort in log order) and starts with a [`SegmentHeader`] record that
//! repeats both numbers. Segments are written one after the other; a segment
//! is complete and synced before the next one is created, so only the last
//! segment can end in a torn write.
//!
//! Each Ready is one batch: a `BatchStart` record giving the batch's length,
//! then its records, all written with one append and one sync. Reading a
//! segment tells a torn tail from corruption:
//! - in the last segment, a batch that is damaged anywhere (a checksum
//!   mismatch, zeros, a record cut short) and that reaches the end of the
//!   file is the write a crash interrupted: it is cut whole, so a Ready is
//!   all or nothing. This holds however the file system tore the write
//!   (a prefix, or pages missing in the middle);
//! - a frame cut short by the end of the file (a partial header, or a checked
//!   length running past the end) is torn too;
//! - a damaged frame where a batch should start, with no valid batch start
//!   anywhere after it, is torn (the last write lost its first pages, or
//!   garbage or zeros follow the last write);
//! - anything else (a damaged batch with bytes after it, a damaged frame
//!   with a valid batch after it, any damage in a segment that is not the
//!   last) is corruption and is refused with the file and offset.
//!
//! NB: damage in the last batch of the last segment is indistinguishable
//! from a torn write and is cut with a warning. It is never applied; but if
//! that batch had been acknowledged (a bit flip after its fsync), it is lost.
//! Conversely, an entry whose data happens to contain a valid batch-start
//! frame can make a torn tail look like corruption: recovery then refuses
//! (the safe direction) rather than guess.

use std::path::Path;

use cairn_core::raft::Index;

use super::record::{
    decode_frame, next_valid_frame_after, BatchStart, Frame, RecordKind, SegmentHeader, WalRecord,
    SEGMENT_FORMAT_VERSION, SEGMENT_MAGIC,
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
///
/// A segment is its head (the header record, then the carried snapshot
/// marker and hard state, written and synced together at creation) followed
/// by batches, each a [`BatchStart`] record and the records of one Ready.
/// Only whole, valid batches are returned: a torn last batch is cut whole.
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
    let mut in_head = true;
    let mut torn_tail = None;
    while offset < bytes.len() {
        let (kind, payload, end) = match decode_frame(bytes, offset) {
            Frame::Complete { kind, payload, end } => (kind, payload, end),
            Frame::Incomplete { reason } => {
                if !is_last {
                    return Err(corrupted(
                        offset,
                        format!("{reason} in a segment that is not the last"),
                    ));
                }
                torn_tail = Some(TornTail {
                    offset: offset as u64,
                    reason,
                });
                break;
            }
            Frame::Invalid { reason } => {
                if !is_last {
                    return Err(corrupted(
                        offset,
                        format!("{reason} in a segment that is not the last"),
                    ));
                }
                // Where a batch should start: if a later batch exists, this
                // one was synced before it and the damage is corruption.
                // Otherwise the damage is inside the last write (possibly
                // with surviving pages of it further on): torn.
                if let Some(next) = next_valid_frame_after(bytes, offset, RecordKind::BatchStart) {
                    return Err(corrupted(
                        offset,
                        format!("{reason}, followed by a valid batch at offset {next}"),
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
        match record {
            WalRecord::SegmentHeader(header) if offset == 0 => {
                if header != name.header() {
                    return Err(corrupted(
                        0,
                        format!("segment header {header:?} does not match the file name {name:?}"),
                    ));
                }
                offset = end;
            }
            _ if offset == 0 => {
                return Err(corrupted(
                    0,
                    format!("segment starts with a {kind:?} record, not a header"),
                ));
            }
            WalRecord::HardState(_) | WalRecord::Compacted(_) if in_head => {
                records.push((offset as u64, record));
                offset = end;
            }
            WalRecord::BatchStart(batch) => {
                in_head = false;
                match scan_batch(bytes, end, batch) {
                    Ok((batch_records, batch_end)) => {
                        records.extend(batch_records);
                        offset = batch_end;
                    }
                    Err(damage) => {
                        let batch_end = end as u64 + batch.bytes;
                        if is_last && batch_end >= bytes.len() as u64 {
                            // The file ends inside or with this batch: it is the
                            // write a crash interrupted. Cut it whole.
                            torn_tail = Some(TornTail {
                                offset: offset as u64,
                                reason: format!(
                                    "batch at offset {offset} is torn: {} at offset {}",
                                    damage.reason, damage.offset
                                ),
                            });
                            break;
                        }
                        let place = if is_last {
                            format!(
                                "and {} bytes follow the batch",
                                bytes.len() as u64 - batch_end
                            )
                        } else {
                            "in a segment that is not the last".to_string()
                        };
                        return Err(corrupted(
                            damage.offset,
                            format!(
                                "{} in the batch that starts at offset {offset}, {place}",
                                damage.reason
                            ),
                        ));
                    }
                }
            }
            _ => {
                return Err(corrupted(
                    offset,
                    format!("unexpected {kind:?} record outside a batch"),
                ));
            }
        }
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

/// Where and why a batch is damaged.
#[derive(Debug)]
struct BatchDamage {
    offset: usize,
    reason: String,
}

/// Reads the records of the batch whose [`BatchStart`] ends at `start`.
/// Returns them with the offset just past the batch.
fn scan_batch(
    bytes: &[u8],
    start: usize,
    batch: BatchStart,
) -> Result<(Vec<(u64, WalRecord)>, usize), BatchDamage> {
    let batch_end = u64::try_from(start)
        .ok()
        .and_then(|start| start.checked_add(batch.bytes));
    let batch_end = match batch_end.and_then(|end| usize::try_from(end).ok()) {
        Some(end) if end <= bytes.len() => end,
        _ => {
            return Err(BatchDamage {
                offset: start,
                reason: format!(
                    "batch of {} bytes runs past the end of the file ({} present)",
                    batch.bytes,
                    bytes.len() - start
                ),
            });
        }
    };
    // Records may not run past their batch.
    let batch_bytes = &bytes[..batch_end];
    let mut records = Vec::new();
    let mut offset = start;
    while offset < batch_end {
        let (kind, payload, end) = match decode_frame(batch_bytes, offset) {
            Frame::Complete { kind, payload, end } => (kind, payload, end),
            Frame::Incomplete { reason } | Frame::Invalid { reason } => {
                return Err(BatchDamage { offset, reason });
            }
        };
        let record =
            WalRecord::decode(kind, payload).map_err(|reason| BatchDamage { offset, reason })?;
        match record {
            WalRecord::HardState(_)
            | WalRecord::Entry(_)
            | WalRecord::SnapshotInstalled(_)
            | WalRecord::Compacted(_) => records.push((offset as u64, record)),
            WalRecord::SegmentHeader(_) | WalRecord::Metadata(_) | WalRecord::BatchStart(_) => {
                return Err(BatchDamage {
                    offset,
                    reason: format!("unexpected {kind:?} record inside a batch"),
                });
            }
        }
        offset = end;
    }
    Ok((records, batch_end))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use cairn_core::raft::{Entry, EntryKind, HardState, Term};

    use super::super::record::{encode_record, RecordKind};
    use super::*;

    const NAME: SegmentName = SegmentName {
        sequence: 3,
        first_index: Index(7),
    };

    fn path() -> PathBuf {
        PathBuf::from("/data/wal").join(NAME.file_name())
    }

    fn entry(index: u64) -> Entry {
        Entry {
            term: Term(1),
            index: Index(index),
            kind: EntryKind::Normal,
            data: vec![1; 5],
        }
    }

    /// Appends a batch of `entries` and returns the offset it starts at.
    fn push_batch(bytes: &mut Vec<u8>, entries: &[Entry]) -> usize {
        let mut records = Vec::new();
        for entry in entries {
            encode_record(RecordKind::Entry, entry, &mut records).unwrap();
        }
        let start = bytes.len();
        let batch = BatchStart {
            bytes: records.len() as u64,
        };
        encode_record(RecordKind::BatchStart, &batch, bytes).unwrap();
        bytes.extend_from_slice(&records);
        start
    }

    fn head() -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_record(RecordKind::SegmentHeader, &NAME.header(), &mut bytes).unwrap();
        encode_record(RecordKind::HardState, &HardState::default(), &mut bytes).unwrap();
        bytes
    }

    fn entries_of(scanned: &ScannedSegment) -> Vec<u64> {
        scanned
            .records
            .iter()
            .filter_map(|(_, record)| match record {
                WalRecord::Entry(entry) => Some(entry.index.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn whole_batches_are_read_back() {
        let mut bytes = head();
        push_batch(&mut bytes, &[entry(7), entry(8)]);
        push_batch(&mut bytes, &[entry(9)]);
        for is_last in [false, true] {
            let scanned = scan_segment(&path(), NAME, &bytes, is_last).unwrap();
            assert_eq!(entries_of(&scanned), vec![7, 8, 9]);
            assert_eq!(scanned.valid_bytes, bytes.len() as u64);
            assert_eq!(scanned.torn_tail, None);
        }
    }

    #[test]
    fn hole_in_the_last_batch_cuts_the_batch_whole() {
        let mut bytes = head();
        push_batch(&mut bytes, &[entry(7)]);
        let last = push_batch(&mut bytes, &[entry(8), entry(9), entry(10)]);
        // Zero the first record of the last batch; later records stay valid.
        bytes[last + 25..last + 40].fill(0);
        let scanned = scan_segment(&path(), NAME, &bytes, true).unwrap();
        assert_eq!(entries_of(&scanned), vec![7]);
        assert_eq!(scanned.valid_bytes, last as u64);
        let error = scan_segment(&path(), NAME, &bytes, false).unwrap_err();
        assert!(error.to_string().contains("not the last"), "{error}");
    }

    #[test]
    fn damaged_batch_followed_by_another_is_corruption() {
        let mut bytes = head();
        let first = push_batch(&mut bytes, &[entry(7), entry(8)]);
        push_batch(&mut bytes, &[entry(9)]);
        bytes[first + 30] ^= 0x10;
        let error = scan_segment(&path(), NAME, &bytes, true).unwrap_err();
        let StorageError::Corrupted { offset, reason, .. } = &error else {
            panic!("expected Corrupted, got {error}");
        };
        assert!(*offset as usize > first, "offset {offset}");
        assert!(reason.contains("bytes follow the batch"), "{reason}");
    }

    #[test]
    fn damaged_batch_start_followed_by_another_batch_is_corruption() {
        let mut bytes = head();
        let first = push_batch(&mut bytes, &[entry(7)]);
        push_batch(&mut bytes, &[entry(8)]);
        bytes[first + 2] ^= 0x01;
        let error = scan_segment(&path(), NAME, &bytes, true).unwrap_err();
        assert!(
            error.to_string().contains("followed by a valid batch"),
            "{error}"
        );
        assert!(
            error.to_string().contains(&format!("offset {first}")),
            "{error}"
        );
    }

    #[test]
    fn record_outside_a_batch_is_corruption() {
        let mut bytes = head();
        push_batch(&mut bytes, &[entry(7)]);
        encode_record(RecordKind::Entry, &entry(8), &mut bytes).unwrap();
        let error = scan_segment(&path(), NAME, &bytes, true).unwrap_err();
        assert!(error.to_string().contains("outside a batch"), "{error}");
    }

    #[test]
    fn segment_under_the_wrong_name_is_refused() {
        let bytes = head();
        let other = SegmentName {
            sequence: 4,
            first_index: Index(7),
        };
        let error = scan_segment(&path(), other, &bytes, true).unwrap_err();
        assert!(
            error.to_string().contains("does not match the file name"),
            "{error}"
        );
    }

    #[test]
    fn every_prefix_of_the_last_segment_is_a_clean_cut() {
        let mut bytes = head();
        let head_bytes = bytes.len();
        let second = {
            push_batch(&mut bytes, &[entry(7)]);
            push_batch(&mut bytes, &[entry(8), entry(9)])
        };
        for len in head_bytes..bytes.len() {
            let scanned = scan_segment(&path(), NAME, &bytes[..len], true).unwrap();
            let expected: Vec<u64> = if len < second { vec![] } else { vec![7] };
            assert_eq!(entries_of(&scanned), expected, "prefix {len}");
        }
    }

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
