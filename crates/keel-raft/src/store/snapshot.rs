//! The snapshot file format, its writer and its verifying reader.
//!
//! ```text
//! "KEELSNAP" | u32 version (1) | u32 meta_len | meta (protobuf keel.raft.v1.SnapshotMeta)
//! records:   u32 key_len | key | u32 value_len | value        (state-machine CF, key order)
//! trailer:   u32 0xFFFF_FFFF | u64 record_count | [32] SHA-256 over the records section
//! ```
//!
//! The SHA-256 over the records is the same function as the admin API's state digest, so a
//! snapshot can be compared with a live node's state. Integrity in transit is checked per
//! chunk (CRC-32) by the transport; the trailer checks the assembled file end to end.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use keel_proto::raft::v1 as pb;
use prost::Message;
use sha2::{Digest as _, Sha256};

use crate::codec;
use crate::error::{Error, Result};
use crate::typ::SnapshotMeta;

/// One state-machine key and value.
pub type Record = (Box<[u8]>, Box<[u8]>);

const MAGIC: &[u8; 8] = b"KEELSNAP";
const VERSION: u32 = 1;
const END: u32 = u32::MAX;

/// Running digest over state-machine records (key order).
#[derive(Default)]
pub struct StateHasher {
    sha: Sha256,
    count: u64,
}

impl StateHasher {
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        self.sha.update((key.len() as u32).to_be_bytes());
        self.sha.update(key);
        self.sha.update((value.len() as u32).to_be_bytes());
        self.sha.update(value);
        self.count += 1;
    }

    /// (record count, SHA-256).
    pub fn finish(self) -> (u64, [u8; 32]) {
        (self.count, self.sha.finalize().into())
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a snapshot file from records in key order; fsyncs it before returning.
pub fn write<I>(path: &Path, meta: &SnapshotMeta, records: I) -> Result<(u64, [u8; 32])>
where
    I: IntoIterator<Item = Result<Record>>,
{
    let ctx = || format!("writing snapshot {}", path.display());
    let file = File::create(path).map_err(Error::io(ctx()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let meta_bytes = codec::snapshot_meta_to_pb(meta).encode_to_vec();
    let mut hasher = StateHasher::default();
    (|| -> std::io::Result<()> {
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_be_bytes())?;
        w.write_all(&(meta_bytes.len() as u32).to_be_bytes())?;
        w.write_all(&meta_bytes)?;
        Ok(())
    })()
    .map_err(Error::io(ctx()))?;
    for rec in records {
        let (k, v) = rec?;
        hasher.add(&k, &v);
        (|| -> std::io::Result<()> {
            w.write_all(&(k.len() as u32).to_be_bytes())?;
            w.write_all(&k)?;
            w.write_all(&(v.len() as u32).to_be_bytes())?;
            w.write_all(&v)
        })()
        .map_err(Error::io(ctx()))?;
    }
    let (count, sha) = hasher.finish();
    (|| -> std::io::Result<()> {
        w.write_all(&END.to_be_bytes())?;
        w.write_all(&count.to_be_bytes())?;
        w.write_all(&sha)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })()
    .map_err(Error::io(ctx()))?;
    Ok((count, sha))
}

/// Reads only the metadata of a snapshot file.
pub fn read_meta(path: &Path) -> Result<SnapshotMeta> {
    let file =
        File::open(path).map_err(Error::io(format!("opening snapshot {}", path.display())))?;
    let mut r = BufReader::new(file);
    read_header(&mut r, path)
}

fn read_header(r: &mut impl Read, path: &Path) -> Result<SnapshotMeta> {
    let bad = |what: &str| Error::Decode(format!("snapshot {}: {what}", path.display()));
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|_| bad("truncated header"))?;
    if &magic != MAGIC {
        return Err(bad("not a Keel snapshot (bad magic)"));
    }
    let version = read_u32(r).map_err(|_| bad("truncated header"))?;
    if version != VERSION {
        return Err(bad(&format!("unsupported version {version}")));
    }
    let len = read_u32(r).map_err(|_| bad("truncated header"))? as usize;
    let mut meta = vec![0u8; len];
    r.read_exact(&mut meta)
        .map_err(|_| bad("truncated metadata"))?;
    let meta =
        pb::SnapshotMeta::decode(meta.as_slice()).map_err(|e| bad(&format!("metadata: {e}")))?;
    codec::snapshot_meta_from_pb(&meta).map_err(|e| bad(&e.to_string()))
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

/// Reads and verifies a whole snapshot, handing every record to `visit` in order (an error
/// from `visit` stops the read and is returned). The records are handed out before the
/// trailer is checked: a caller must not commit what it built from them unless this returns
/// `Ok` (or must have verified the file with a first pass).
pub fn read_verified(
    path: &Path,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<(SnapshotMeta, u64, [u8; 32])> {
    let file =
        File::open(path).map_err(Error::io(format!("opening snapshot {}", path.display())))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let meta = read_header(&mut r, path)?;
    let bad = |what: &str| Error::Decode(format!("snapshot {}: {what}", path.display()));
    let mut hasher = StateHasher::default();
    loop {
        let klen = read_u32(&mut r).map_err(|_| bad("truncated records"))?;
        if klen == END {
            break;
        }
        let mut k = vec![0u8; klen as usize];
        r.read_exact(&mut k).map_err(|_| bad("truncated key"))?;
        let vlen = read_u32(&mut r).map_err(|_| bad("truncated records"))?;
        let mut v = vec![0u8; vlen as usize];
        r.read_exact(&mut v).map_err(|_| bad("truncated value"))?;
        hasher.add(&k, &v);
        visit(&k, &v)?;
    }
    let mut count = [0u8; 8];
    let mut sha = [0u8; 32];
    r.read_exact(&mut count)
        .map_err(|_| bad("truncated trailer"))?;
    r.read_exact(&mut sha)
        .map_err(|_| bad("truncated trailer"))?;
    let (n, computed) = hasher.finish();
    if n != u64::from_be_bytes(count) || computed != sha {
        return Err(bad("checksum mismatch: the snapshot is corrupt"));
    }
    Ok((meta, n, sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: None,
            last_membership: Default::default(),
        }
    }

    fn recs(n: u8) -> Vec<Result<Record>> {
        (0..n)
            .map(|i| {
                Ok((
                    vec![i].into_boxed_slice(),
                    vec![i; i as usize].into_boxed_slice(),
                ))
            })
            .collect()
    }

    #[test]
    fn round_trip_preserves_records_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let (n, sha) = write(&path, &meta(), recs(10)).unwrap();
        let mut seen = Vec::new();
        let (m, n2, sha2) = read_verified(&path, |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!((m, n2, sha2), (meta(), n, sha));
        assert_eq!(seen.len(), 10);
        assert_eq!(seen[3], (vec![3], vec![3, 3, 3]));
        assert_eq!(read_meta(&path).unwrap(), meta());
    }

    #[test]
    fn a_flipped_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write(&path, &meta(), recs(10)).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let i = bytes.len() - 60;
        bytes[i] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_verified(&path, |_, _| Ok(())).unwrap_err();
        assert!(
            err.to_string().contains("corrupt") || err.to_string().contains("truncated"),
            "{err}"
        );
    }
}
