//! Disk damage for the corrupt nemesis: pure file operations on a stopped node's data dir.

use std::path::{Path, PathBuf};

use rand::Rng;

/// What to damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Flip 64 bytes in the middle of the newest RocksDB WAL file.
    WalFlip,
    /// Cut the newest WAL file at a random offset in its second half.
    WalTruncate,
    /// Flip 64 bytes in the middle of the newest SST file.
    SstFlip,
    /// Flip 64 bytes in the middle of the newest snapshot file.
    SnapshotFlip,
    /// No damage: the node is started on its data dir with another `cluster-id`.
    WrongCluster,
    /// No damage: the node is started on a copy of another node's data dir.
    ForeignNode,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::WalFlip => "wal-flip",
            Mode::WalTruncate => "wal-truncate",
            Mode::SstFlip => "sst-flip",
            Mode::SnapshotFlip => "snapshot-flip",
            Mode::WrongCluster => "wrong-cluster-id",
            Mode::ForeignNode => "foreign-node",
        }
    }
}

/// The newest non-empty file under `dir` whose name ends with `suffix`.
fn newest(dir: &Path, suffix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 128).unwrap_or(false))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

fn flip_middle(file: &Path) -> std::io::Result<()> {
    let mut bytes = std::fs::read(file)?;
    let mid = bytes.len() / 2;
    let end = (mid + 64).min(bytes.len());
    for b in &mut bytes[mid..end] {
        *b ^= 0x5a;
    }
    std::fs::write(file, bytes)
}

/// Damages one file of `data_dir` (a node's `data-dir`: `db/` and `snapshots/`) and returns
/// it; an error when there is no such file (the op is then skipped).
pub fn damage(data_dir: &Path, mode: Mode, rng: &mut impl Rng) -> anyhow::Result<PathBuf> {
    let db = data_dir.join("db");
    let file = match mode {
        Mode::WalFlip | Mode::WalTruncate => newest(&db, ".log"),
        Mode::SstFlip => newest(&db, ".sst"),
        Mode::SnapshotFlip => newest(&data_dir.join("snapshots"), ""),
        Mode::WrongCluster | Mode::ForeignNode => {
            anyhow::bail!("{} damages no file", mode.name())
        }
    }
    .ok_or_else(|| anyhow::anyhow!("no file to damage for {}", mode.name()))?;
    match mode {
        Mode::WalTruncate => {
            let len = std::fs::metadata(&file)?.len();
            let at = rng.random_range(len / 2..len.max(len / 2 + 1));
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)?
                .set_len(at)?;
        }
        _ => flip_middle(&file)?,
    }
    Ok(file)
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// What a log file gained past `offset`.
pub fn new_log_text(log: &Path, offset: u64) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    String::from_utf8_lossy(bytes.get(offset as usize..).unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn damage_changes_the_newest_file_of_its_kind_and_skips_when_there_is_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("db")).unwrap();
        let wal = dir.path().join("db/000004.log");
        std::fs::write(&wal, vec![7u8; 4096]).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(damage(dir.path(), Mode::WalFlip, &mut rng).unwrap(), wal);
        let bytes = std::fs::read(&wal).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert_eq!(bytes.iter().filter(|&&b| b != 7).count(), 64);
        damage(dir.path(), Mode::WalTruncate, &mut rng).unwrap();
        let len = std::fs::metadata(&wal).unwrap().len();
        assert!((2048..4096).contains(&len), "{len}");
        assert!(damage(dir.path(), Mode::SstFlip, &mut rng).is_err());
        assert!(damage(dir.path(), Mode::SnapshotFlip, &mut rng).is_err());
    }
}
