//! The head of a send stream, read before `zfs receive` sees a byte.
//!
//! A stream is a sequence of 312-byte `dmu_replay_record_t` records. It opens with a
//! `DRR_BEGIN` record whose `drr_versioninfo` carries the header type (a single
//! substream, or a compound stream as `zfs send -I/-R/-p` writes it) and the feature
//! flags; `DMU_BACKUP_FEATURE_RAW` marks a raw (still encrypted) stream. A compound
//! stream's own header carries no raw flag: the first substream's `DRR_BEGIN`, after
//! the header's `DRR_END`, does.
//!
//! Properties travel only in a compound header's payload (`zfs send -p`/`-R`), which
//! zferry never asks for; [`inspect`] refuses it. They would be set on the copy over its
//! local values (`canmount` included: measured in the lab), so zferry's relay and its
//! guard inspect every stream they pass to `zfs receive`.
//!
//! Checking the first substream is enough to keep plaintext off a host: later
//! substreams of the same stream land in the dataset the first one made or extended,
//! which is then encrypted with a key that host does not hold, and the kernel refuses
//! a non-raw stream into an encrypted dataset whose key is not loaded. Likewise an
//! incremental first substream needs its target to exist already, and a later full
//! substream cannot make it anew: zfs refuses a full stream into an existing dataset
//! without `-F`, which no key admits.

use std::io::Read;

/// Size of one `dmu_replay_record_t`.
pub const RECORD: usize = 312;

const DMU_BACKUP_MAGIC: u64 = 0x2_F5BA_CBAC;
const DRR_BEGIN: u32 = 0;
const DRR_END: u32 = 5;
const DMU_SUBSTREAM: u64 = 1;
const DMU_COMPOUNDSTREAM: u64 = 2;
const DMU_BACKUP_FEATURE_RAW: u64 = 1 << 24;

/// What the head of a stream says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// The (first) snapshot the stream carries, as the sender named it.
    pub toname: String,
    /// The stream is raw: its data stays encrypted.
    pub raw: bool,
    /// An incremental (has a base).
    pub incremental: bool,
}

/// Why a stream head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stream zferry receives: {0}")]
pub struct BadStream(pub &'static str);

/// What [`inspect`] needs to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// Decided: the first substream's BEGIN record.
    Done(Begin),
    /// The first `n` bytes are a compound header; read up to `n` bytes in total and ask
    /// again.
    Need(usize),
}

struct Record<'a> {
    b: &'a [u8],
    swap: bool,
}

impl Record<'_> {
    fn u32_at(&self, off: usize) -> u32 {
        let v = u32::from_le_bytes(self.b[off..off + 4].try_into().expect("4 bytes"));
        if self.swap {
            v.swap_bytes()
        } else {
            v
        }
    }
    fn u64_at(&self, off: usize) -> u64 {
        let v = u64::from_le_bytes(self.b[off..off + 8].try_into().expect("8 bytes"));
        if self.swap {
            v.swap_bytes()
        } else {
            v
        }
    }
}

/// Reads a BEGIN record; `swap` when the sender's byte order differs.
fn begin_record(b: &[u8]) -> Result<Record<'_>, BadStream> {
    let magic = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
    let swap = match magic {
        DMU_BACKUP_MAGIC => false,
        m if m.swap_bytes() == DMU_BACKUP_MAGIC => true,
        _ => return Err(BadStream("no send stream magic")),
    };
    let r = Record { b, swap };
    if r.u32_at(0) != DRR_BEGIN {
        return Err(BadStream("the first record is not DRR_BEGIN"));
    }
    Ok(r)
}

/// Looks at the first bytes of a stream. `head` must hold at least [`RECORD`] bytes;
/// for a compound stream the answer is [`Head::Need`] until it also holds the header's
/// END record and the first substream's BEGIN.
pub fn inspect(head: &[u8]) -> Result<Head, BadStream> {
    if head.len() < RECORD {
        return Ok(Head::Need(RECORD));
    }
    let first = begin_record(&head[..RECORD])?;
    let vi = first.u64_at(16);
    match vi & 3 {
        DMU_SUBSTREAM => Ok(Head::Done(substream(&first))),
        DMU_COMPOUNDSTREAM => {
            // zferry never sends -p or -R, so a compound header has no nvlist payload.
            if first.u32_at(4) != 0 {
                return Err(BadStream(
                    "a compound stream with a payload (zfs send -R/-p)",
                ));
            }
            let need = 3 * RECORD;
            if head.len() < need {
                return Ok(Head::Need(need));
            }
            let end = Record {
                b: &head[RECORD..2 * RECORD],
                swap: first.swap,
            };
            if end.u32_at(0) != DRR_END {
                return Err(BadStream("the compound header is not followed by DRR_END"));
            }
            let sub = begin_record(&head[2 * RECORD..need])?;
            if sub.u64_at(16) & 3 != DMU_SUBSTREAM {
                return Err(BadStream("a compound stream nested in another"));
            }
            Ok(Head::Done(substream(&sub)))
        }
        _ => Err(BadStream("unknown stream header type")),
    }
}

/// Reads `r` until [`inspect`] decides on its head: the bytes read, and the first
/// substream's BEGIN (`None` when the stream ended first). A refused head is an
/// `InvalidData` error that says why.
pub fn read_head(r: &mut impl Read) -> std::io::Result<(Vec<u8>, Option<Begin>)> {
    let mut head = Vec::new();
    loop {
        let bad = |e| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let more = match inspect(&head).map_err(bad)? {
            Head::Done(b) => return Ok((head, Some(b))),
            Head::Need(n) => n - head.len(),
        };
        if r.by_ref().take(more as u64).read_to_end(&mut head)? < more {
            return Ok((head, None));
        }
    }
}

fn substream(r: &Record<'_>) -> Begin {
    let flags = r.u64_at(16) >> 2;
    let name = &r.b[56..RECORD];
    let len = name.iter().position(|&c| c == 0).unwrap_or(name.len());
    Begin {
        toname: String::from_utf8_lossy(&name[..len]).into_owned(),
        raw: flags & DMU_BACKUP_FEATURE_RAW != 0,
        incremental: r.u64_at(48) != 0,
    }
}

/// Builds stream heads the way libzfs writes them, for tests.
#[cfg(test)]
pub(crate) mod build {
    use super::*;

    /// A BEGIN record.
    pub fn begin(hdrtype: u64, raw: bool, fromguid: u64, toname: &str) -> Vec<u8> {
        let mut r = vec![0u8; RECORD];
        r[8..16].copy_from_slice(&DMU_BACKUP_MAGIC.to_le_bytes());
        let flags: u64 = if raw { DMU_BACKUP_FEATURE_RAW } else { 0 } | 0x4; // + SA_SPILL-ish bit
        r[16..24].copy_from_slice(&(hdrtype | (flags << 2)).to_le_bytes());
        r[48..56].copy_from_slice(&fromguid.to_le_bytes());
        r[56..56 + toname.len()].copy_from_slice(toname.as_bytes());
        r
    }

    /// An END record.
    pub fn end() -> Vec<u8> {
        let mut r = vec![0u8; RECORD];
        r[0..4].copy_from_slice(&DRR_END.to_le_bytes());
        r
    }

    /// The head of a plain `zfs send [-i]`: one substream.
    pub fn substream(fromguid: u64, toname: &str) -> Vec<u8> {
        begin(DMU_SUBSTREAM, false, fromguid, toname)
    }

    /// The head of `zfs send -p`: a compound header with a payload (the properties).
    pub fn with_properties() -> Vec<u8> {
        let mut h = compound(false);
        h[4] = 1;
        h
    }

    /// The head of `zfs send [-w] -I`: compound header, END, first substream.
    pub fn compound(raw: bool) -> Vec<u8> {
        [
            begin(DMU_COMPOUNDSTREAM, false, 0, "t/a@2"),
            end(),
            begin(DMU_SUBSTREAM, raw, 7, "t/a@2"),
        ]
        .concat()
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use proptest::prelude::*;

    fn done(b: &[u8]) -> Begin {
        match inspect(b).unwrap() {
            Head::Done(h) => h,
            Head::Need(n) => panic!("needs {n}"),
        }
    }

    #[test]
    fn substreams_say_raw_or_not() {
        let raw = done(&begin(DMU_SUBSTREAM, true, 0, "tank/a@s1"));
        assert_eq!(
            raw,
            Begin {
                toname: "tank/a@s1".into(),
                raw: true,
                incremental: false
            }
        );
        assert!(!done(&begin(DMU_SUBSTREAM, false, 9, "tank/a@s2")).raw);
        let mut swapped = begin(DMU_SUBSTREAM, true, 9, "x@y");
        for range in [8..16, 16..24, 48..56] {
            swapped[range].reverse();
        }
        assert!(done(&swapped).raw && done(&swapped).incremental);
    }

    #[test]
    fn compound_streams_are_judged_by_their_first_substream() {
        let raw = compound(true);
        assert_eq!(inspect(&raw[..RECORD]), Ok(Head::Need(3 * RECORD)));
        assert!(done(&raw).raw);
        assert!(!done(&compound(false)).raw);
        let mut payload = raw.clone();
        payload[4] = 1;
        assert!(inspect(&payload).is_err());
        let mut no_end = raw.clone();
        no_end[RECORD] = 3;
        assert!(inspect(&no_end).is_err());
    }

    #[test]
    fn refuses_what_is_not_a_stream() {
        assert_eq!(inspect(&[0u8; 10]), Ok(Head::Need(RECORD)));
        assert!(inspect(&[0u8; RECORD]).is_err());
        let mut not_begin = begin(DMU_SUBSTREAM, true, 0, "a@b");
        not_begin[0] = 1;
        assert!(inspect(&not_begin).is_err());
        let mut bad_type = begin(3, true, 0, "a@b");
        bad_type[16] |= 3;
        assert!(inspect(&bad_type).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..1000)) {
            let _ = inspect(&b);
        }
    }
}
