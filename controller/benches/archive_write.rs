//! Archive write and restore throughput: the controller's writer (tar + zstd -3, every file
//! hashed with SHA-256 on the way) against `tar -cf - . | zstd -3 -T0` over the same tree, and
//! the controller's restore of that archive (a verify pass, then the extraction by
//! descriptor, hashing again) against `zstd -d | tar -x`.
//!
//!     cargo bench -p aps-controller --bench archive_write [-- SIZE_MIB [RUNS [VARIANT]]]
//!
//! The tree (default 1024 MiB) is generated once under `$APS_BENCH_DIR` (default
//! `/tmp/aps-bench-archive-write`), never in the repository, deterministic, and shaped like a web site:
//! - 45% many small text files (1–16 KiB, words from a small vocabulary: compresses well),
//! - 20% log-like text files of 1–4 MiB (compress well),
//! - 35% media-like random files of 1–8 MiB (incompressible).
//!
//! Each variant runs RUNS times (default 3), alternating, with the tree in the page cache (so
//! this measures CPU, not the disk); the median is printed. Variants:
//! - `controller zstd-3 T0`: `ArchiveOptions::default()` (the CLI's `backup`: one zstd worker
//!   per core, at most 4);
//! - `controller zstd-3 T1`: one zstd thread, what `aps-controller run` uses per backup (it
//!   runs `--jobs` backups at once);
//! - `tar | zstd -3 -T0`: the shell baseline (needs `tar` and `zstd` on PATH);
//! - `controller restore`: `ArchiveReader::open` (verifies the whole archive) then
//!   `extract_web_dir` of the `T0` archive into an empty folder;
//! - `zstd -d | tar -x`: the shell baseline's archive unpacked into an empty folder.
//!
//! The restore variants need the archives their write variants made in the same run (`t0`
//! and `shell`). Each run restores into a new folder; restored folders are removed after the last
//! run (see the end of `main` for why not between runs).
//!
//! VARIANT (`t0`, `t1`, `shell`, `restore` or `untar`, or several joined by commas, e.g.
//! `t0,restore`; default all) runs those only, e.g. to read one's peak RSS
//! alone. Run the binary directly (`target/release/deps/archive_write-…`), not through cargo,
//! when reading RSS: Linux keeps `ru_maxrss` across `execve`, so a process started by cargo
//! reports cargo's own peak if that was higher, and a forked child starts with its parent's.
//!
//! Peak RSS: the process's own `ru_maxrss` after the controller runs (the generator streams
//! through a 64 KiB buffer, so the writer dominates), and the largest child's for the pipeline.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use aps_controller::archive::{
    ArchiveOptions, ArchiveReader, ArchiveWriter, Compression, ManifestHeader,
};
use camino::{Utf8Path, Utf8PathBuf};

#[path = "../../benches/support/rusage.rs"]
mod rusage;
use rusage::{cpu, maxrss};

const MIB: u64 = 1024 * 1024;

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<u64>().ok());
    let size_mib = args.next().unwrap_or(1024);
    let runs = args.next().unwrap_or(3).max(1) as usize;
    let only = std::env::args()
        .skip(1)
        .find(|a| a.parse::<u64>().is_err() && !a.starts_with('-'));
    let base = Utf8PathBuf::from(
        std::env::var("APS_BENCH_DIR")
            .unwrap_or_else(|_| "/tmp/aps-bench-archive-write".to_owned()),
    );
    let tree = base.join(format!("tree-{size_mib}m"));
    let input = ensure_tree(&tree, size_mib * MIB);
    let out = base.join("out");
    std::fs::create_dir_all(&out).unwrap();
    println!(
        "tree {tree}: {} files, {:.0} MiB; {runs} runs per variant, median",
        input.files,
        input.bytes as f64 / MIB as f64
    );

    let mut results: Vec<(&str, Vec<Run>)> = vec![
        ("controller zstd-3 T0", Vec::new()),
        ("controller zstd-3 T1", Vec::new()),
        ("tar | zstd -3 -T0", Vec::new()),
        ("controller restore", Vec::new()),
        ("zstd -d | tar -x", Vec::new()),
    ];
    let wanted = |v: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == v));
    for run in 0..runs {
        if wanted("t0") {
            results[0]
                .1
                .push(controller(&tree, &out.join("c0.aps.tar.zst"), 0));
        }
        if wanted("t1") {
            results[1]
                .1
                .push(controller(&tree, &out.join("c1.aps.tar.zst"), 1));
        }
        if wanted("shell") {
            results[2].1.push(shell(&tree, &out.join("shell.tar.zst")));
        }
        if wanted("restore") {
            results[3].1.push(controller_restore(
                &out.join("c0.aps.tar.zst"),
                &out.join(format!("restored-c-{}-{run}", std::process::id())),
            ));
        }
        if wanted("untar") {
            results[4].1.push(shell_restore(
                &out.join("shell.tar.zst"),
                &out.join(format!("restored-s-{}-{run}", std::process::id())),
            ));
        }
    }
    let self_rss = maxrss(libc::RUSAGE_SELF);
    let child_rss = maxrss(libc::RUSAGE_CHILDREN);

    println!(
        "{:<22} {:>8} {:>10} {:>9} {:>10} {:>7}",
        "variant", "wall s", "MiB/s in", "CPU s", "out MiB", "ratio"
    );
    let mut medians = Vec::new();
    let results_copy = results.clone();
    for (name, mut rs) in results {
        if rs.is_empty() {
            continue;
        }
        rs.sort_by_key(|r| r.wall);
        let m = rs[rs.len() / 2];
        println!(
            "{:<22} {:>8.2} {:>10.0} {:>9.2} {:>10.1} {:>7.3}",
            name,
            m.wall.as_secs_f64(),
            input.bytes as f64 / MIB as f64 / m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            m.out_bytes as f64 / MIB as f64,
            input.bytes as f64 / m.out_bytes as f64
        );
        medians.push(m);
    }
    let median = |name: &str| {
        let mut rs: Vec<Run> = results_copy
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| r.clone())
            .unwrap_or_default();
        rs.sort_by_key(|r| r.wall);
        rs.get(rs.len() / 2).copied()
    };
    if let (Some(c), Some(s)) = (median("controller restore"), median("zstd -d | tar -x")) {
        println!(
            "controller restore / zstd -d | tar -x wall time: {:.2}x",
            c.wall.as_secs_f64() / s.wall.as_secs_f64()
        );
    }
    if medians.len() >= 3 {
        let base_wall = medians[2].wall.as_secs_f64();
        println!(
            "controller/shell wall time: T0 {:.2}x, T1 {:.2}x; output size T0/shell {:.3}",
            medians[0].wall.as_secs_f64() / base_wall,
            medians[1].wall.as_secs_f64() / base_wall,
            medians[0].out_bytes as f64 / medians[2].out_bytes as f64
        );
    }
    println!(
        "peak RSS: this process {} MiB, largest child {} MiB (see the module doc)",
        self_rss / 1024,
        child_rss / 1024
    );
    for f in ["c0.aps.tar.zst", "c1.aps.tar.zst", "shell.tar.zst"] {
        let _ = std::fs::remove_file(out.join(f));
    }
    // Restored trees go only now, after every timed run, and not at all with
    // APS_BENCH_KEEP_RESTORED (a script running several benches removes them at its end):
    // ext4 skips inodes freed in the last minutes when it allocates new ones, scanning past
    // them, so deleting 40,000 files just before a restore makes that restore several times
    // slower, whatever writes it.
    if std::env::var_os("APS_BENCH_KEEP_RESTORED").is_none() {
        for e in std::fs::read_dir(&out).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("restored-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Run {
    wall: Duration,
    /// User + system time of this process (controller) or of the children (shell).
    cpu: Duration,
    out_bytes: u64,
}

fn controller(tree: &Utf8Path, dest: &Utf8Path, workers: u32) -> Run {
    let opts = ArchiveOptions {
        compression: Compression::Zstd { level: 3 },
        recipients: Vec::new(),
        zstd_workers: workers,
    };
    let header = ManifestHeader::new("urn:bench", "bench", "1.0", "1", "1.2", "bench");
    let cpu0 = cpu(libc::RUSAGE_SELF);
    let t0 = Instant::now();
    let file = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(dest).expect("create output"),
    );
    let mut w = ArchiveWriter::create(file, &opts, header).expect("writer");
    w.add_web_dir("/", tree).expect("add tree");
    let (_, mut file) = w.finish_into_inner().expect("finish");
    file.flush().unwrap();
    drop(file);
    let wall = t0.elapsed();
    Run {
        wall,
        cpu: cpu(libc::RUSAGE_SELF) - cpu0,
        out_bytes: std::fs::metadata(dest).unwrap().len(),
    }
}

/// An empty folder to restore into (the previous run's removed first, untimed).
fn fresh(dir: &Utf8Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
}

fn controller_restore(archive: &Utf8Path, dest: &Utf8Path) -> Run {
    fresh(dest);
    let cpu0 = cpu(libc::RUSAGE_SELF);
    let t0 = Instant::now();
    let reader = ArchiveReader::open(archive, None).expect("open and verify");
    reader.extract_web_dir("/", dest).expect("extract");
    let wall = t0.elapsed();
    Run {
        wall,
        cpu: cpu(libc::RUSAGE_SELF) - cpu0,
        out_bytes: std::fs::metadata(archive).unwrap().len(),
    }
}

fn shell_restore(archive: &Utf8Path, dest: &Utf8Path) -> Run {
    fresh(dest);
    let cpu0 = cpu(libc::RUSAGE_CHILDREN);
    let t0 = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg("zstd -q -d -c \"$1\" | tar -xf - -C \"$2\"")
        .arg("sh")
        .arg(archive.as_str())
        .arg(dest.as_str())
        .status()
        .expect("run sh");
    let wall = t0.elapsed();
    assert!(status.success(), "zstd -d | tar -x failed: {status}");
    Run {
        wall,
        cpu: cpu(libc::RUSAGE_CHILDREN) - cpu0,
        out_bytes: std::fs::metadata(archive).unwrap().len(),
    }
}

fn shell(tree: &Utf8Path, dest: &Utf8Path) -> Run {
    let cpu0 = cpu(libc::RUSAGE_CHILDREN);
    let t0 = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg("tar -cf - -C \"$1\" . | zstd -q -3 -T0 -f -o \"$2\"")
        .arg("sh")
        .arg(tree.as_str())
        .arg(dest.as_str())
        .status()
        .expect("run sh");
    let wall = t0.elapsed();
    assert!(status.success(), "tar | zstd failed: {status}");
    Run {
        wall,
        cpu: cpu(libc::RUSAGE_CHILDREN) - cpu0,
        out_bytes: std::fs::metadata(dest).unwrap().len(),
    }
}

struct TreeSize {
    files: u64,
    bytes: u64,
}

/// xorshift64*: deterministic, fast, good enough to defeat compression where wanted.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "the", "function", "return", "class", "public", "private", "static", "array", "string",
    "value", "config", "database", "user", "session", "request", "response", "echo", "if", "else",
    "foreach", "while", "template", "header", "footer", "plugin", "widget", "cache", "post",
    "comment", "author", "title", "content", "<div>", "</div>", "$this->", "=>", "{", "}", ";",
    "\n", "\n    ", "null", "true", "false", "0", "1", "42", "wp_", "get_", "set_",
];

fn text(rng: &mut Rng, len: usize, out: &mut Vec<u8>) {
    out.clear();
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
        out.push(b' ');
    }
    out.truncate(len);
}

fn log_lines(rng: &mut Rng, len: usize, out: &mut Vec<u8>) {
    out.clear();
    let mut t = 1_700_000_000u64;
    while out.len() < len {
        t += rng.below(5);
        let _ = writeln!(
            out,
            "{t} 10.0.{}.{} \"GET /blog/?p={} HTTP/1.1\" {} {} \"{}\"",
            rng.below(4),
            rng.below(255),
            rng.below(5000),
            [200, 200, 200, 304, 404][rng.below(5) as usize],
            rng.below(90_000),
            WORDS[rng.below(WORDS.len() as u64) as usize]
        );
    }
    out.truncate(len);
}

fn random(rng: &mut Rng, len: usize, out: &mut Vec<u8>) {
    out.clear();
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
}

/// Generates the tree unless a complete one (marker file) is there; returns its size.
fn ensure_tree(root: &Utf8Path, total: u64) -> TreeSize {
    let marker = root.join(".complete");
    if marker.is_file() {
        let text = std::fs::read_to_string(&marker).unwrap();
        let (files, bytes) = text.trim().split_once(' ').unwrap();
        return TreeSize {
            files: files.parse().unwrap(),
            bytes: bytes.parse().unwrap(),
        };
    }
    let _ = std::fs::remove_dir_all(root);
    eprintln!("generating {} MiB under {root} …", total / MIB);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut buf = Vec::with_capacity(8 << 20);
    let mut size = TreeSize { files: 0, bytes: 0 };
    let write = |path: Utf8PathBuf, data: &[u8], size: &mut TreeSize| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        size.files += 1;
        size.bytes += data.len() as u64;
    };
    let (small, logs) = (total * 45 / 100, total * 65 / 100);
    while size.bytes < small {
        let len = 1024 + rng.below(15 * 1024) as usize;
        text(&mut rng, len, &mut buf);
        let n = size.files;
        let path = root.join(format!(
            "src/m{:03}/d{:02}/f{n}.php",
            n / 2000,
            (n / 100) % 20
        ));
        write(path, &buf, &mut size);
    }
    while size.bytes < logs {
        let len = (MIB + rng.below(3 * MIB)) as usize;
        log_lines(&mut rng, len, &mut buf);
        let path = root.join(format!("logs/access-{}.log", size.files));
        write(path, &buf, &mut size);
    }
    while size.bytes < total {
        let len = (MIB + rng.below(7 * MIB)).min(total - size.bytes) as usize;
        random(&mut rng, len, &mut buf);
        let path = root.join(format!(
            "uploads/{}/img-{}.jpg",
            size.files % 12,
            size.files
        ));
        write(path, &buf, &mut size);
    }
    std::fs::write(&marker, format!("{} {}\n", size.files, size.bytes)).unwrap();
    size
}
