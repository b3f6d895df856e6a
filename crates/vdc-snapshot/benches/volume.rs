//! Times a snapshot of a generated volume against `tar | zstd -3 -T1`.
//!
//! The volume (`VDC_SNAPSHOT_BENCH_MB` MiB, default 1024, under a temp dir
//! in /tmp) is half one large file and half many 1–4 MiB files, all
//! semi-compressible: random 4 KiB blocks, blocks repeated from a small
//! pool, and log-like text. Run with
//! `cargo bench -p vdc-snapshot --bench volume`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vdc_snapshot::{stage, SnapshotMeta, SnapshotStore};

const MIB: u64 = 1 << 20;
const BLOCK: usize = 4096;

// === Data ===

/// xorshift64*: fast, deterministic, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Makes 4 KiB blocks: a third fresh random bytes, a third taken from a
/// pool of 256 random blocks, a third log lines.
struct Blocks {
    rng: Rng,
    pool: Vec<Vec<u8>>,
    line: u64,
}

impl Blocks {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed | 1);
        let pool = (0..256)
            .map(|_| {
                let mut b = vec![0; BLOCK];
                rng.fill(&mut b);
                b
            })
            .collect();
        Self { rng, pool, line: 0 }
    }

    fn block(&mut self, out: &mut Vec<u8>) {
        out.clear();
        match self.rng.below(3) {
            0 => {
                out.resize(BLOCK, 0);
                self.rng.fill(out);
            }
            1 => {
                let i = self.rng.below(self.pool.len() as u64) as usize;
                out.extend_from_slice(&self.pool[i]);
            }
            _ => {
                while out.len() < BLOCK {
                    self.line += 1;
                    let r = self.rng.next();
                    let line = format!(
                        "2025-03-{:02}T{:02}:{:02}:{:02}.{:03}Z INFO http request id={} path=/api/v1/items/{} status={} latency_ms={}\n",
                        1 + r % 28,
                        (r >> 8) % 24,
                        (r >> 16) % 60,
                        (r >> 24) % 60,
                        (r >> 32) % 1000,
                        self.line,
                        (r >> 40) % 100_000,
                        [200, 200, 200, 404, 500][((r >> 50) % 5) as usize],
                        (r >> 54) % 300,
                    );
                    out.extend_from_slice(line.as_bytes());
                }
                out.truncate(BLOCK);
            }
        }
    }

    fn write_file(&mut self, path: &Path, bytes: u64) {
        let mut w =
            BufWriter::with_capacity(1 << 20, File::create(path).expect("create data file"));
        let mut block = Vec::with_capacity(BLOCK);
        let mut left = bytes;
        while left > 0 {
            self.block(&mut block);
            let n = left.min(BLOCK as u64) as usize;
            w.write_all(&block[..n]).expect("write data file");
            left -= n as u64;
        }
        w.flush().expect("flush data file");
    }
}

/// Writes the volume; returns how many files it holds.
fn generate(root: &Path, total_mib: u64) -> u64 {
    let mut blocks = Blocks::new(0x5eed);
    fs::create_dir_all(root.join("db")).expect("create volume");
    let big = total_mib / 2 * MIB;
    blocks.write_file(&root.join("db/big.dat"), big);
    let mut files = 1;
    let mut left = total_mib * MIB - big;
    while left > 0 {
        let size = ((1 + blocks.rng.below(4)) * MIB - blocks.rng.below(MIB / 2)).min(left);
        let dir = root.join(format!("segments/{:02}", files % 16));
        fs::create_dir_all(&dir).expect("create segment dir");
        blocks.write_file(&dir.join(format!("seg-{files:05}.log")), size);
        left -= size;
        files += 1;
    }
    files
}

// === Run ===

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn sync() {
    let _ = Command::new("sync").status();
}

fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(path).expect("read dir") {
        let entry = entry.expect("read dir");
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn main() {
    let mib: u64 = std::env::var("VDC_SNAPSHOT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let base = tempfile::Builder::new()
        .prefix("vdc-snapshot-bench-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let volume = base.path().join("volume");
    let staged = base.path().join("staged");
    let restored = base.path().join("restored");
    let tarball = base.path().join("volume.tar.zst");

    eprintln!("generating {mib} MiB under {} ...", base.path().display());
    let files = generate(&volume, mib);
    sync();

    let mut store = SnapshotStore::open(&base.path().join("store")).expect("open store");
    if let Some(threads) = std::env::var("VDC_SNAPSHOT_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        store = store.with_threads(threads);
    }
    let meta = |created_ms| SnapshotMeta {
        app: "bench".into(),
        component: "db".into(),
        volume: "data".into(),
        created_ms,
        kind: "manual".into(),
        ..SnapshotMeta::default()
    };

    let (report, frozen) = timed(|| stage(&volume, &staged).expect("stage"));
    let (manifest, capture) = timed(|| store.capture(&staged, meta(1)).expect("capture"));
    let total = frozen + capture;
    fs::remove_dir_all(&staged).expect("remove staged copy");
    sync();

    let script = format!(
        "tar -C '{}' -cf - . | zstd -3 -T1 -q -o '{}'",
        volume.display(),
        tarball.display()
    );
    let (status, tar) = timed(|| Command::new("sh").arg("-c").arg(&script).status());
    let tar_ok = matches!(status, Ok(s) if s.success());
    let tar_bytes = fs::metadata(&tarball).map(|m| m.len()).unwrap_or(0);
    sync();

    // A second snapshot of the unchanged volume: every blob already stored.
    let (_, frozen2) = timed(|| stage(&volume, &staged).expect("stage again"));
    let (_, capture2) = timed(|| store.capture(&staged, meta(2)).expect("capture again"));
    fs::remove_dir_all(&staged).expect("remove staged copy");

    let (_, verify) = timed(|| store.verify(&manifest.id).expect("verify"));
    let (restore_report, restore) =
        timed(|| store.restore(&manifest.id, &restored).expect("restore"));
    assert_eq!(restore_report.bytes, manifest.logical_bytes);
    let blob_bytes = dir_bytes(&store.root().join("blobs"));

    let secs = |d: Duration| d.as_secs_f64();
    let rate = |d: Duration| mib as f64 / d.as_secs_f64();
    let to_mib = |b: u64| b as f64 / MIB as f64;
    println!();
    println!(
        "vdc-snapshot volume benchmark: {mib} MiB, {files} files (1 x {} MiB + {} x 1-4 MiB), chunk 4 MiB, zstd -3, {} cores, reflinked: {}",
        mib / 2,
        files - 1,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        report.reflinked
    );
    println!("| step | time (s) | MiB/s |");
    println!("|---|---:|---:|");
    let row = |name: &str, d: Duration| println!("| {name} | {:.2} | {:.0} |", secs(d), rate(d));
    row("stage (frozen window)", frozen);
    row("capture (after stage)", capture);
    row("vdc total (stage + capture)", total);
    if tar_ok {
        row("tar \\| zstd -3 -T1", tar);
    } else {
        println!("| tar \\| zstd -3 -T1 | failed: {status:?} | |");
    }
    row("stage again (unchanged volume)", frozen2);
    row("capture again (all blobs present)", capture2);
    row("verify", verify);
    row("restore", restore);
    println!();
    if tar_ok {
        println!("vdc total / tar|zstd: {:.2}", secs(total) / secs(tar));
        println!("frozen / tar|zstd:    {:.2}", secs(frozen) / secs(tar));
    }
    println!(
        "stored: {:.1} MiB (manifest stored_bytes; {:.1} MiB of blob files), tar.zst: {:.1} MiB, stored / tar.zst: {:.3}",
        to_mib(manifest.stored_bytes),
        to_mib(blob_bytes),
        to_mib(tar_bytes),
        manifest.stored_bytes as f64 / tar_bytes.max(1) as f64
    );
    if std::env::var_os("VDC_SNAPSHOT_BENCH_KEEP").is_some() {
        eprintln!("kept {}", base.keep().display());
    }
}
