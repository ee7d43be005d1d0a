//! Cheap, portable randomness and the per-document "meta" every collection shares.
//!
//! The generator must produce a million documents in a few seconds and must be reproducible forever
//! (tests compare lakes built on different machines and days), so it does not use `rand::StdRng`,
//! whose output may change between `rand` releases and whose ChaCha key setup per document would be
//! the single most expensive step. Instead every document gets its own SplitMix64 stream keyed by
//! `(seed, collection, i, purpose)`. SplitMix64 is tiny, fast, statistically fine for test data and
//! fully specified, so the same key yields the same document on every platform and toolchain.

use bson::{oid::ObjectId, Bson, DateTime, Decimal128};
use chrono::{FixedOffset, SecondsFormat};

/// Milliseconds in a day.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Stream purposes, mixed into the key so the streams of one document are independent.
pub(crate) const SALT_META: u64 = 0x6d65_7461_0000_0001;
pub(crate) const SALT_BODY: u64 = 0x626f_6479_0000_0002;
pub(crate) const SALT_MUTATE: u64 = 0x6d75_7461_7465_0003;

/// The SplitMix64 finaliser: a bijective avalanche of 64 bits.
#[inline]
pub(crate) fn fmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a collection name: stable across Rust releases (unlike `DefaultHasher`).
pub(crate) fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// The key of one stream: every input bit influences every output bit.
#[inline]
pub(crate) fn stream_key(seed: u64, collection_hash: u64, i: u64, salt: u64) -> u64 {
    let h = fmix64(seed ^ salt);
    let h = fmix64(h ^ collection_hash);
    fmix64(h ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A SplitMix64 generator with the handful of helpers the document builders need.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(key: u64) -> Self {
        Rng(key)
    }

    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        fmix64(self.0)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift (bias is negligible for test data).
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..hi` (`lo < hi`).
    #[inline]
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p`.
    #[inline]
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniformly chosen element of a non-empty slice.
    #[inline]
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Index chosen with the given integer weights.
    pub(crate) fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut r = self.below(u64::from(total)) as u32;
        for (k, w) in weights.iter().enumerate() {
            if r < *w {
                return k;
            }
            r -= w;
        }
        weights.len() - 1
    }

    /// `n` random bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// How `modified_at` is stored in one document (the point of the exercise: one field, three BSON types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeRepr {
    /// BSON UTC datetime (~90 %).
    Date,
    /// Int64 milliseconds since the epoch (~5 %).
    EpochMillis,
    /// ISO-8601 string in UTC with a `Z` suffix (~2.5 %).
    IsoUtc,
    /// ISO-8601 string in India Standard Time, `+05:30` (~2.5 %).
    IsoIst,
}

/// The cheap, collection-independent facts about document `i`: when it was created and last modified,
/// how `modified_at` is spelled, and which facility owns it. Computed from its own stream so that other
/// collections can derive a referenced document's `_id` and facility without building the document.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub created_ms: i64,
    pub modified_ms: i64,
    pub repr: TimeRepr,
    pub facility: usize,
}

/// The `(seed, collection)` pair a document is derived from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source {
    pub seed: u64,
    pub collection_hash: u64,
    pub end_ms: i64,
    pub window_ms: i64,
}

impl Source {
    pub(crate) fn rng(&self, i: u64, salt: u64) -> Rng {
        Rng::new(stream_key(self.seed, self.collection_hash, i, salt))
    }

    /// See [`Meta`]. Facilities are weighted like a real group (the flagship hospital is the busiest).
    pub(crate) fn meta(&self, i: u64) -> Meta {
        let mut r = self.rng(i, SALT_META);
        let created_ms = self.end_ms - r.below(self.window_ms as u64 + 1) as i64;
        // ~40 % of records were never touched after creation.
        let modified_ms =
            if r.chance(0.4) { created_ms } else { created_ms + r.below((self.end_ms - created_ms) as u64 + 1) as i64 };
        let repr = match r.below(1000) {
            0..=899 => TimeRepr::Date,
            900..=949 => TimeRepr::EpochMillis,
            950..=974 => TimeRepr::IsoUtc,
            _ => TimeRepr::IsoIst,
        };
        let facility = r.weighted(&super::data::FACILITY_WEIGHTS);
        Meta { created_ms, modified_ms, repr, facility }
    }

    /// Deterministic ObjectId of document `i` (created at `created_ms`), laid out like a real one:
    /// 4 bytes of creation time (so ids sort roughly by creation, as in MongoDB), 3 bytes from the seed
    /// and collection, 5 bytes of `i` (unique for `i < 2^40` within a collection).
    pub(crate) fn object_id_at(&self, i: u64, created_ms: i64) -> ObjectId {
        let created_s = created_ms.div_euclid(1000).clamp(0, i64::from(u32::MAX)) as u32;
        let tag = fmix64(self.seed ^ self.collection_hash).to_be_bytes();
        let ib = i.to_be_bytes();
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&created_s.to_be_bytes());
        b[4..7].copy_from_slice(&tag[0..3]);
        b[7..12].copy_from_slice(&ib[3..8]);
        ObjectId::from_bytes(b)
    }
}

/// The `modified_at` value of a document in the representation chosen by its meta.
pub(crate) fn time_value(ms: i64, repr: TimeRepr) -> Bson {
    match repr {
        TimeRepr::Date => Bson::DateTime(DateTime::from_millis(ms)),
        TimeRepr::EpochMillis => Bson::Int64(ms),
        TimeRepr::IsoUtc | TimeRepr::IsoIst => {
            let utc = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
            Bson::String(if repr == TimeRepr::IsoUtc {
                utc.to_rfc3339_opts(SecondsFormat::Millis, true)
            } else {
                let ist = FixedOffset::east_opt(5 * 3600 + 1800).expect("IST offset is valid");
                utc.with_timezone(&ist).to_rfc3339_opts(SecondsFormat::Millis, false)
            })
        }
    }
}

/// A Decimal128 with two decimal places from an integer number of paise, e.g. `123450` → `1234.50`.
/// Built directly from the IEEE 754-2008 BID layout (coefficient in the low 113 bits, biased exponent
/// above it, sign on top) instead of formatting and parsing a string.
pub(crate) fn dec2(paise: i64) -> Decimal128 {
    const BIAS: u128 = 6176;
    let coefficient = u128::from(paise.unsigned_abs());
    let exponent = BIAS - 2;
    let mut bits = (exponent << 113) | coefficient;
    if paise < 0 {
        bits |= 1u128 << 127;
    }
    Decimal128::from_bytes(bits.to_le_bytes())
}

/// Rounds to `places` decimal places (for realistic-looking doubles).
#[inline]
pub(crate) fn round_to(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}
