//! Keys and values as etcd's benchmark makes them: a `--key-size` buffer
//! whose first bytes are the Go `binary.PutVarint` (zigzag varint) of the
//! key number, drawn uniformly from the key space or taken sequentially;
//! one random value of `--val-size` bytes reused by every request.

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use super::config::KeyValueShape;
use super::error::BenchError;

/// Longest zigzag varint of an i64.
pub const VARINT_BYTES_MAX: usize = 10;

/// Writes Go's `binary.PutVarint(value)` into `buffer`; returns the length.
pub fn put_varint(buffer: &mut [u8], value: i64) -> usize {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let mut written = 0;
    while zigzag >= 0x80 {
        buffer[written] = (zigzag as u8) | 0x80;
        zigzag >>= 7;
        written += 1;
    }
    buffer[written] = zigzag as u8;
    written + 1
}

/// Bytes `put_varint` needs for `value`.
pub fn varint_len(value: i64) -> usize {
    let mut buffer = [0u8; VARINT_BYTES_MAX];
    put_varint(&mut buffer, value)
}

/// Generates the keys of one client.
#[derive(Debug)]
pub struct KeyGenerator {
    key_size: usize,
    key_space_size: u64,
    sequential: bool,
    random: StdRng,
}

/// Checks that every key number of the space fits in `key_size` bytes.
pub fn validate_shape(shape: &KeyValueShape) -> Result<(), BenchError> {
    if shape.key_space_size == 0 {
        return Err(BenchError::InvalidFlags {
            reason: "--key-space-size must be at least 1".to_string(),
        });
    }
    let largest = i64::try_from(shape.key_space_size - 1).unwrap_or(i64::MAX);
    let needed = varint_len(largest);
    if shape.key_size < needed {
        return Err(BenchError::InvalidFlags {
            reason: format!(
                "--key-size {} cannot hold {} distinct keys (needs {needed} bytes)",
                shape.key_size, shape.key_space_size
            ),
        });
    }
    Ok(())
}

impl KeyGenerator {
    /// A generator for `shape`, seeded; `shape` must have passed
    /// [`validate_shape`].
    pub fn new(shape: &KeyValueShape, seed: u64) -> KeyGenerator {
        KeyGenerator {
            key_size: shape.key_size,
            key_space_size: shape.key_space_size,
            sequential: shape.sequential_keys,
            random: StdRng::seed_from_u64(seed),
        }
    }

    /// The key for request number `request` (used when sequential).
    pub fn key(&mut self, request: u64) -> Vec<u8> {
        let number = if self.sequential {
            request
        } else {
            self.random.gen_range(0..self.key_space_size)
        };
        self.key_at(number)
    }

    /// The key numbered `number` modulo the key space (etcd's `txn-put`
    /// numbers its keys this way so that one transaction never repeats a
    /// key).
    pub fn key_at(&self, number: u64) -> Vec<u8> {
        let number = number % self.key_space_size;
        let mut key = vec![0u8; self.key_size.max(VARINT_BYTES_MAX)];
        let written = put_varint(&mut key, number as i64);
        assert!(
            written <= self.key_size,
            "key number {number} needs {written} bytes > key size {}",
            self.key_size
        );
        key.truncate(self.key_size);
        key
    }
}

/// One random value of `size` bytes.
pub fn random_value(size: usize, seed: u64) -> Vec<u8> {
    let mut value = vec![0u8; size];
    StdRng::seed_from_u64(seed).fill_bytes(&mut value);
    value
}

#[cfg(test)]
mod tests {
    //! Guards the key encoding against Go's `binary.PutVarint` and the
    //! key-size check against keys that would silently collide.
    use super::*;

    #[test]
    fn varint_matches_go_put_varint() {
        // Values from Go: binary.PutVarint(buf, v) for these v.
        let cases: [(i64, &[u8]); 5] = [
            (0, &[0x00]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (64, &[0x80, 0x01]),
            (99_999, &[0xbe, 0x9a, 0x0c]),
        ];
        for (value, expected) in cases {
            let mut buffer = [0u8; VARINT_BYTES_MAX];
            let written = put_varint(&mut buffer, value);
            assert_eq!(&buffer[..written], expected, "value {value}");
        }
        assert_eq!(varint_len(i64::MAX), VARINT_BYTES_MAX);
    }

    fn shape(key_size: usize, key_space_size: u64, sequential_keys: bool) -> KeyValueShape {
        KeyValueShape {
            key_size,
            val_size: 8,
            key_space_size,
            sequential_keys,
        }
    }

    #[test]
    fn sequential_keys_cycle_through_the_space_and_are_distinct() {
        let shape = shape(8, 100_000, true);
        validate_shape(&shape).expect("valid shape");
        let mut generator = KeyGenerator::new(&shape, 7);
        let keys: std::collections::BTreeSet<Vec<u8>> =
            (0..100_000).map(|request| generator.key(request)).collect();
        assert_eq!(keys.len(), 100_000);
        assert!(keys.iter().all(|key| key.len() == 8));
        assert_eq!(generator.key(100_000), generator.key(0));
    }

    #[test]
    fn random_keys_stay_in_the_space() {
        let shape = shape(3, 100_000, false);
        validate_shape(&shape).expect("valid shape");
        let mut generator = KeyGenerator::new(&shape, 1);
        let keys: std::collections::BTreeSet<Vec<u8>> =
            (0..20_000).map(|request| generator.key(request)).collect();
        assert!(keys.len() > 15_000, "only {} distinct keys", keys.len());
        assert!(keys.len() <= 100_000);
    }

    #[test]
    fn numbered_keys_of_one_transaction_are_distinct() {
        let shape = shape(8, 1_000, false);
        let generator = KeyGenerator::new(&shape, 3);
        // Transaction 999 of 4 puts wraps around the key space.
        let keys: std::collections::BTreeSet<Vec<u8>> =
            (0..4).map(|op| generator.key_at(999 * 4 + op)).collect();
        assert_eq!(keys.len(), 4);
        assert_eq!(generator.key_at(1_000), generator.key_at(0));
    }

    #[test]
    fn too_small_key_size_is_rejected() {
        let error = validate_shape(&shape(2, 100_000, false)).expect_err("2 bytes is too few");
        assert!(error.to_string().contains("needs 3 bytes"), "{error}");
        assert!(validate_shape(&shape(8, 0, false)).is_err());
    }
}
