//! Shrinking hangs. A hung case cannot be stopped in-process, so when the
//! watchdog sees one, the operations are encoded and re-run in child
//! processes of this test binary (`replay_case`, which exits with `HUNG`
//! when its own watchdog fires), removing and simplifying operations
//! greedily for as long as the child still hangs.

use crate::ops::{Build, Flavor, Op, Sel, TxOp};
use std::process::Command;

pub const ENV: &str = "KAME_MODEL_REPLAY";
/// Exit status of a replay child that hung.
pub const HUNG: i32 = 3;

// ------------------------------------------------------------- encoding

fn sel(out: &mut Vec<u8>, s: Sel) {
    match s {
        Sel::Any(i) => out.extend([0, i]),
        Sel::In(k) => out.extend([1, k]),
        Sel::Kid(k) => out.extend([2, k]),
        Sel::Deep(c, d) => out.extend([3, c, d]),
    }
}

fn flavor(out: &mut Vec<u8>, f: Flavor) {
    match f {
        Flavor::Plain => out.extend([0, 0]),
        Flavor::Stats => out.extend([1, 0]),
        Flavor::If(k) => out.extend([2, k]),
        Flavor::While(b) => out.extend([3, b as u8]),
        Flavor::Try(b) => out.extend([4, b as u8]),
    }
}

fn tx_op(out: &mut Vec<u8>, op: &TxOp) {
    match *op {
        TxOp::Get(n) => {
            out.push(0);
            sel(out, n);
        }
        TxOp::Write(n, d) => {
            out.push(1);
            sel(out, n);
            out.push(d);
        }
        TxOp::Contains(n) => {
            out.push(2);
            sel(out, n);
        }
        TxOp::Children(n) => {
            out.push(3);
            sel(out, n);
        }
        TxOp::Snap => out.push(4),
        TxOp::Attempt => out.push(5),
        TxOp::CheckAll => out.push(6),
        TxOp::Insert { p, c, online } => {
            out.push(7);
            sel(out, p);
            sel(out, c);
            out.push(online as u8);
        }
        TxOp::Release { p, c } => {
            out.push(8);
            sel(out, p);
            sel(out, c);
        }
        TxOp::Swap { p, a, b } => {
            out.push(9);
            sel(out, p);
            sel(out, a);
            sel(out, b);
        }
        TxOp::Move { p, c, q, online, d } | TxOp::NestedMove { p, c, q, online, d } => {
            out.push(if matches!(op, TxOp::Move { .. }) {
                10
            } else {
                14
            });
            sel(out, p);
            sel(out, c);
            sel(out, q);
            out.extend([online as u8, d]);
        }
        TxOp::InsertRelease { p, c, online } => {
            out.push(11);
            sel(out, p);
            sel(out, c);
            out.push(online as u8);
        }
        TxOp::Nested { t, n, d } => {
            out.push(12);
            sel(out, t);
            sel(out, n);
            out.push(d);
        }
        TxOp::NestedSnap(t) => {
            out.push(13);
            sel(out, t);
        }
    }
}

pub fn encode(ops: &[Op]) -> String {
    let mut out = Vec::new();
    for op in ops {
        match op {
            Op::Insert(p, c) => {
                out.push(0);
                sel(&mut out, *p);
                sel(&mut out, *c);
            }
            Op::Release(p, c) => {
                out.push(1);
                sel(&mut out, *p);
                sel(&mut out, *c);
            }
            Op::Read(n) => {
                out.push(2);
                sel(&mut out, *n);
            }
            Op::Check(s) => {
                out.push(3);
                sel(&mut out, *s);
            }
            Op::Hold(s) => {
                out.push(4);
                sel(&mut out, *s);
            }
            Op::Recheck => out.push(5),
            Op::Tx { s, flavor: f, ops } => {
                out.push(6);
                sel(&mut out, *s);
                flavor(&mut out, *f);
                out.push(ops.len() as u8);
                for o in ops {
                    tx_op(&mut out, o);
                }
            }
            Op::Chain { under, k, build } => {
                out.push(7);
                sel(&mut out, *under);
                out.extend([*k, *build as u8]);
            }
            Op::Every { s, t, try_form } => {
                out.push(8);
                sel(&mut out, *s);
                sel(&mut out, *t);
                out.push(*try_form as u8);
            }
        }
    }
    out.iter().map(|b| format!("{b:02x}")).collect()
}

struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn bool(&mut self) -> Option<bool> {
        Some(self.u8()? != 0)
    }
    fn sel(&mut self) -> Option<Sel> {
        Some(match self.u8()? {
            0 => Sel::Any(self.u8()?),
            1 => Sel::In(self.u8()?),
            2 => Sel::Kid(self.u8()?),
            3 => Sel::Deep(self.u8()?, self.u8()?),
            _ => return None,
        })
    }
    fn flavor(&mut self) -> Option<Flavor> {
        let (t, v) = (self.u8()?, self.u8()?);
        Some(match t {
            0 => Flavor::Plain,
            1 => Flavor::Stats,
            2 => Flavor::If(v),
            3 => Flavor::While(v != 0),
            4 => Flavor::Try(v != 0),
            _ => return None,
        })
    }
    fn tx_op(&mut self) -> Option<TxOp> {
        Some(match self.u8()? {
            0 => TxOp::Get(self.sel()?),
            1 => TxOp::Write(self.sel()?, self.u8()?),
            2 => TxOp::Contains(self.sel()?),
            3 => TxOp::Children(self.sel()?),
            4 => TxOp::Snap,
            5 => TxOp::Attempt,
            6 => TxOp::CheckAll,
            7 => TxOp::Insert {
                p: self.sel()?,
                c: self.sel()?,
                online: self.bool()?,
            },
            8 => TxOp::Release {
                p: self.sel()?,
                c: self.sel()?,
            },
            9 => TxOp::Swap {
                p: self.sel()?,
                a: self.sel()?,
                b: self.sel()?,
            },
            t @ (10 | 14) => {
                let (p, c, q, online, d) = (
                    self.sel()?,
                    self.sel()?,
                    self.sel()?,
                    self.bool()?,
                    self.u8()?,
                );
                if t == 10 {
                    TxOp::Move { p, c, q, online, d }
                } else {
                    TxOp::NestedMove { p, c, q, online, d }
                }
            }
            11 => TxOp::InsertRelease {
                p: self.sel()?,
                c: self.sel()?,
                online: self.bool()?,
            },
            12 => TxOp::Nested {
                t: self.sel()?,
                n: self.sel()?,
                d: self.u8()?,
            },
            13 => TxOp::NestedSnap(self.sel()?),
            _ => return None,
        })
    }
    fn op(&mut self) -> Option<Op> {
        Some(match self.u8()? {
            0 => Op::Insert(self.sel()?, self.sel()?),
            1 => Op::Release(self.sel()?, self.sel()?),
            2 => Op::Read(self.sel()?),
            3 => Op::Check(self.sel()?),
            4 => Op::Hold(self.sel()?),
            5 => Op::Recheck,
            6 => {
                let (s, flavor, n) = (self.sel()?, self.flavor()?, self.u8()?);
                let ops = (0..n).map(|_| self.tx_op()).collect::<Option<_>>()?;
                Op::Tx { s, flavor, ops }
            }
            7 => Op::Chain {
                under: self.sel()?,
                k: self.u8()?.max(1),
                build: match self.u8()? {
                    0 => Build::BottomUp,
                    1 => Build::TopDown,
                    _ => Build::Online,
                },
            },
            8 => Op::Every {
                s: self.sel()?,
                t: self.sel()?,
                try_form: self.bool()?,
            },
            _ => return None,
        })
    }
}

pub fn decode(hex: &str) -> Option<Vec<Op>> {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let mut rd = Rd(&bytes);
    let mut ops = Vec::new();
    while !rd.0.is_empty() {
        ops.push(rd.op()?);
    }
    Some(ops)
}

// ------------------------------------------------------------ shrinking

/// How a case went in a child process.
#[derive(Debug)]
pub enum Outcome {
    Pass,
    /// The child's report of the hang.
    Hang(String),
    /// The failure message.
    Fail(String),
}

/// Prefix of the line a failing replay child prints its message after.
pub const FAILED: &str = "model: replay failed: ";

/// A failure's kind: its first line without numbers (node indices and op
/// positions move while shrinking).
pub fn signature(msg: &str) -> String {
    msg.lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect()
}

/// Runs `ops` in a child process of this test binary.
pub fn run_child(ops: &[Op]) -> Outcome {
    let Ok(exe) = std::env::current_exe() else {
        return Outcome::Pass;
    };
    let out = Command::new(exe)
        .args(["--exact", "replay_case", "--nocapture", "--test-threads=1"])
        .env(ENV, encode(ops))
        .env("RUST_BACKTRACE", "0")
        // A shrinking candidate is small: it hangs sooner than a case.
        .env("KAME_MODEL_HANG_MS", "1000")
        .output();
    let Ok(out) = out else {
        return Outcome::Pass;
    };
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code() == Some(HUNG) {
        return Outcome::Hang(err);
    }
    match err.find(FAILED) {
        Some(i) if !out.status.success() => Outcome::Fail(err[i + FAILED.len()..].to_string()),
        _ => Outcome::Pass,
    }
}

/// Structurally simpler variants of `ops`, most promising first.
fn candidates(ops: &[Op]) -> Vec<Vec<Op>> {
    let mut c = Vec::new();
    for i in (0..ops.len()).rev() {
        let mut v = ops.to_vec();
        v.remove(i);
        c.push(v);
    }
    for (i, op) in ops.iter().enumerate() {
        let mut alt: Vec<Op> = Vec::new();
        match op {
            Op::Tx { s, flavor, ops: t } => {
                for j in (0..t.len()).rev() {
                    let mut t = t.clone();
                    t.remove(j);
                    alt.push(Op::Tx {
                        s: *s,
                        flavor: *flavor,
                        ops: t,
                    });
                }
                if !matches!(flavor, Flavor::Plain) {
                    alt.push(Op::Tx {
                        s: *s,
                        flavor: Flavor::Plain,
                        ops: t.clone(),
                    });
                }
            }
            Op::Chain { under, k, build } if *k > 1 => {
                for k in [1, *k / 2, *k - 1] {
                    alt.push(Op::Chain {
                        under: *under,
                        k,
                        build: *build,
                    });
                }
            }
            _ => {}
        }
        for a in alt {
            let mut v = ops.to_vec();
            v[i] = a;
            c.push(v);
        }
    }
    c
}

/// Variants with one byte of the encoding lowered (numbers, selectors).
fn lowered(ops: &[Op]) -> Vec<Vec<Op>> {
    let hex = encode(ops);
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut c = Vec::new();
    for i in 0..bytes.len() {
        for v in [0, bytes[i] / 2, bytes[i].saturating_sub(1)] {
            if v >= bytes[i] {
                continue;
            }
            let mut b = bytes.clone();
            b[i] = v;
            let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
            if let Some(d) = decode(&h) {
                c.push(d);
            }
        }
    }
    c
}

/// Time budget of a shrink in seconds (`KAME_MODEL_SHRINK_S`).
fn budget() -> std::time::Duration {
    let s = std::env::var("KAME_MODEL_SHRINK_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    std::time::Duration::from_secs(s)
}

/// Greedily shrinks `ops` while the child's outcome satisfies `keep`, for
/// at most `budget()` (then the smallest case so far).
pub fn shrink(ops: Vec<Op>, keep: impl Fn(&Outcome) -> bool) -> (Vec<Op>, Outcome) {
    let start = std::time::Instant::now();
    let first = run_child(&ops);
    if !keep(&first) {
        return (ops, first);
    }
    let (mut best, mut outcome) = (ops, first);
    'outer: loop {
        for cand in candidates(&best).into_iter().chain(lowered(&best)) {
            if start.elapsed() > budget() {
                eprintln!("model: shrink budget spent (KAME_MODEL_SHRINK_S)");
                return (best, outcome);
            }
            let o = run_child(&cand);
            if keep(&o) {
                (best, outcome) = (cand, o);
                continue 'outer;
            }
        }
        return (best, outcome);
    }
}
