//! The TLA+ specs in `tla/` and the Rust step functions must name the same
//! steps. This test parses the actions of every spec (the disjuncts of
//! `NextStep`, and of `Next` besides `NextStep`), the tables of
//! `docs/tla-mapping.md` and the sources, and checks that
//!
//! * every spec action is in exactly one table ("Actions" or "Model-only
//!   actions"), and every row of those tables names an action some spec has;
//! * every row of "Operators" names an operator some spec defines;
//! * every mapped Rust function exists as `fn name` in the file the row
//!   names, with a doc line `/// TLA+: Action` right above it (only doc
//!   comments and attributes in between);
//! * every `/// TLA+: X` tag in `src/` belongs to a row.
//!
//! So renaming a step in only one place (spec, table, function or tag)
//! fails. Plain std: no dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    action: String,
    function: String,
    file: String,
}

#[derive(Debug, Default)]
struct Tables {
    actions: Vec<Row>,
    operators: Vec<Row>,
    model_only: Vec<String>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Removes `\* ...` line comments and `(* ... *)` block comments.
fn strip_tla_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b: Vec<char> = src.chars().collect();
    let (mut i, mut depth) = (0, 0usize);
    while i < b.len() {
        if b[i] == '(' && b.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if depth > 0 && b[i] == '*' && b.get(i + 1) == Some(&')') {
            depth -= 1;
            i += 2;
        } else if depth > 0 {
            if b[i] == '\n' {
                out.push('\n');
            }
            i += 1;
        } else if b[i] == '\\' && b.get(i + 1) == Some(&'*') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The body of the top-level definition `name ==` (up to the next line that
/// starts a definition or a separator in column 0).
fn definition_body(src: &str, name: &str) -> Option<String> {
    let lines: Vec<&str> = src.lines().collect();
    let start = lines.iter().position(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with("=="))
    })?;
    let mut body = String::new();
    body.push_str(lines[start].split_once("==").map_or("", |x| x.1));
    body.push('\n');
    for l in &lines[start + 1..] {
        let starts_def = l.chars().next().is_some_and(|c| !c.is_whitespace());
        if starts_def {
            break;
        }
        body.push_str(l);
        body.push('\n');
    }
    Some(body)
}

/// Identifiers in `body` that are followed by `(` and start with an
/// upper-case letter (action applications like `SnapRead(t)`), and, with
/// `bare`, also upper-case identifiers not followed by `(`.
fn applied_names(body: &str, bare: bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_ident_start(chars[i]) && (i == 0 || !is_ident_char(chars[i - 1])) {
            let s = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[s..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let applied = chars.get(j) == Some(&'(');
            let upper = word.chars().next().is_some_and(|c| c.is_ascii_uppercase());
            let keyword = word.chars().all(|c| c.is_ascii_uppercase() || c == '_');
            if upper && !keyword && (applied || bare) {
                out.insert(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The actions of one spec: disjuncts of `NextStep`, plus what `Next` adds
/// besides `NextStep` (e.g. `Terminating`). A spec without `NextStep` uses
/// `Next` alone.
fn spec_actions(src: &str) -> BTreeSet<String> {
    let src = strip_tla_comments(src);
    let mut out = BTreeSet::new();
    if let Some(body) = definition_body(&src, "NextStep") {
        out.extend(applied_names(&body, false));
        if let Some(next) = definition_body(&src, "Next") {
            out.extend(
                applied_names(&next, true)
                    .into_iter()
                    .filter(|n| n != "NextStep"),
            );
        }
    } else if let Some(next) = definition_body(&src, "Next") {
        out.extend(applied_names(&next, true));
    }
    out
}

/// Top-level operator names a spec defines (`Name(...) ==` or `Name ==`).
fn spec_definitions(src: &str) -> BTreeSet<String> {
    let src = strip_tla_comments(src);
    let mut out = BTreeSet::new();
    for l in src.lines() {
        let l = l.strip_prefix("RECURSIVE ").unwrap_or(l);
        let Some(first) = l.chars().next() else {
            continue;
        };
        if !is_ident_start(first) {
            continue;
        }
        let name: String = l.chars().take_while(|&c| is_ident_char(c)).collect();
        let rest = l[name.len()..].trim_start();
        let rest = if rest.starts_with('(') {
            rest.split_once(')').map_or("", |x| x.1).trim_start()
        } else {
            rest
        };
        if rest.starts_with("==") {
            out.insert(name);
        }
    }
    out
}

fn cells(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t.strip_suffix('|').unwrap_or(t);
    t.split('|')
        .map(|c| c.trim().trim_matches('`').trim().to_string())
        .collect()
}

/// Parses the three tables of the mapping document, by section heading.
fn parse_mapping(md: &str) -> Result<Tables, String> {
    let mut t = Tables::default();
    let mut section = String::new();
    for line in md.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h.trim().to_ascii_lowercase();
            continue;
        }
        if !line.trim_start().starts_with('|') {
            continue;
        }
        let c = cells(line);
        let header = c.first().is_some_and(|x| {
            x.eq_ignore_ascii_case("TLA+ action") || x.eq_ignore_ascii_case("TLA+ operator")
        });
        let rule = c.iter().all(|x| x.chars().all(|ch| ch == '-' || ch == ':'));
        if header || rule {
            continue;
        }
        let row = |c: &[String]| -> Result<Row, String> {
            if c.len() < 3 {
                return Err(format!("row needs 3 cells: {line}"));
            }
            Ok(Row {
                action: c[0].clone(),
                function: c[1].trim_end_matches("()").to_string(),
                file: c[2].clone(),
            })
        };
        if section.starts_with("actions") {
            t.actions.push(row(&c)?);
        } else if section.starts_with("operators") {
            t.operators.push(row(&c)?);
        } else if section.starts_with("model-only actions") {
            t.model_only.push(c[0].clone());
        }
    }
    if t.actions.is_empty() {
        return Err("no rows under '## Actions'".into());
    }
    Ok(t)
}

/// Does `src` declare `fn name` with `/// TLA+: tag` right above it (only
/// doc comments and attributes in between)?
fn tagged_fn(src: &str, name: &str, tag: &str) -> Result<(), String> {
    let lines: Vec<&str> = src.lines().collect();
    let decl = |l: &str| {
        let t = l.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub(super) "))
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        let t = t.strip_prefix("const ").unwrap_or(t);
        let t = t.strip_prefix("unsafe ").unwrap_or(t);
        t.strip_prefix("fn ").is_some_and(|r| {
            r.strip_prefix(name)
                .is_some_and(|r| r.starts_with('(') || r.starts_with('<'))
        })
    };
    let fns: Vec<usize> = (0..lines.len()).filter(|&i| decl(lines[i])).collect();
    if fns.is_empty() {
        return Err(format!("no `fn {name}`"));
    }
    let want = format!("/// TLA+: {tag}");
    for &i in &fns {
        let mut j = i;
        while j > 0 {
            j -= 1;
            let l = lines[j].trim();
            if l == want {
                return Ok(());
            }
            if !(l.starts_with("///") || l.starts_with("#[")) {
                break;
            }
        }
    }
    Err(format!(
        "`fn {name}` has no `{want}` doc line right above it"
    ))
}

/// Every `/// TLA+: X` tag in the given sources: (file, X).
fn all_tags(sources: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, src) in sources {
        for l in src.lines() {
            if let Some(x) = l.trim().strip_prefix("/// TLA+: ") {
                out.push((path.clone(), x.trim().to_string()));
            }
        }
    }
    out
}

/// All the checks; returns every problem found.
fn check(specs: &[(String, String)], mapping: &str, sources: &[(String, String)]) -> Vec<String> {
    let mut errs = Vec::new();
    let tables = match parse_mapping(mapping) {
        Ok(t) => t,
        Err(e) => return vec![e],
    };
    let mut actions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut defs = BTreeSet::new();
    for (name, src) in specs {
        let a = spec_actions(src);
        if a.is_empty() {
            errs.push(format!("{name}: no actions found in NextStep / Next"));
        }
        for x in a {
            actions.entry(x).or_default().push(name.clone());
        }
        defs.extend(spec_definitions(src));
    }
    // Each spec action in exactly one table row.
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &tables.actions {
        *count.entry(&r.action).or_default() += 1;
    }
    for m in &tables.model_only {
        *count.entry(m).or_default() += 1;
    }
    for (a, in_specs) in &actions {
        match count.get(a.as_str()).copied().unwrap_or(0) {
            1 => {}
            0 => errs.push(format!(
                "action {a} ({}) is in no table",
                in_specs.join(", ")
            )),
            n => errs.push(format!("action {a} is in {n} table rows")),
        }
    }
    for (a, _) in count.iter().filter(|(a, _)| !actions.contains_key(**a)) {
        errs.push(format!("table row {a}: no spec in tla/ has this action"));
    }
    for r in &tables.operators {
        if !defs.contains(&r.action) {
            errs.push(format!(
                "operator row {}: no spec in tla/ defines it",
                r.action
            ));
        }
    }
    // Functions exist, tagged, in the named file.
    let by_path: BTreeMap<&str, &str> = sources
        .iter()
        .map(|(p, s)| (p.as_str(), s.as_str()))
        .collect();
    for r in tables.actions.iter().chain(&tables.operators) {
        match by_path.get(r.file.as_str()) {
            None => errs.push(format!("{}: file {} does not exist", r.action, r.file)),
            Some(src) => {
                if let Err(e) = tagged_fn(src, &r.function, &r.action) {
                    errs.push(format!("{} -> {}: {}", r.action, r.file, e));
                }
            }
        }
    }
    // Every tag in the code belongs to a row.
    let rows: BTreeSet<(&str, &str)> = tables
        .actions
        .iter()
        .chain(&tables.operators)
        .map(|r| (r.file.as_str(), r.action.as_str()))
        .collect();
    for (path, tag) in all_tags(sources) {
        if !rows.contains(&(path.as_str(), tag.as_str())) {
            errs.push(format!(
                "{path}: tag `TLA+: {tag}` has no row in docs/tla-mapping.md"
            ));
        }
    }
    errs
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_sources(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root()).unwrap_or(&p);
            let rel = rel.to_string_lossy().replace('\\', "/");
            if let Ok(s) = fs::read_to_string(&p) {
                out.push((rel, s));
            }
        }
    }
}

/// (file name, contents) pairs.
type Files = Vec<(String, String)>;

fn repo_inputs() -> (Files, String, Files) {
    let mut specs = Vec::new();
    let mut names: Vec<PathBuf> = fs::read_dir(root().join("tla"))
        .expect("tla/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tla"))
        .collect();
    names.sort();
    for p in names {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        specs.push((name, fs::read_to_string(&p).expect("readable spec")));
    }
    let mapping =
        fs::read_to_string(root().join("docs/tla-mapping.md")).expect("docs/tla-mapping.md exists");
    let mut sources = Vec::new();
    rust_sources(&root().join("src"), &mut sources);
    (specs, mapping, sources)
}

#[test]
fn specs_and_code_name_the_same_steps() {
    let (specs, mapping, sources) = repo_inputs();
    assert!(!specs.is_empty(), "no .tla files in tla/");
    let errs = check(&specs, &mapping, &sources);
    assert!(
        errs.is_empty(),
        "spec <-> code mapping is out of sync:\n  {}",
        errs.join("\n  ")
    );
}

// ---- The checker itself: a rename in any one place must be caught. ----

const SPEC: &str = r#"
---- MODULE M ----
\* Ignored: Comment(t)
Helper(t) == TRUE
(* Also ignored: Block(t) *)
NextStep ==
    \E t \in Threads :
        \/ StepOne(t)
        \/ StepTwo(t) \/ \E n \in Nodes : Preempt(t, n)
Terminating == UNCHANGED vars
Next == NextStep \/ Terminating
====
"#;

const MAP: &str = r#"
## Actions

| TLA+ action | Rust function | File |
|---|---|---|
| StepOne | `step_one` | src/a.rs |
| StepTwo | `step_two()` | src/a.rs |
| Preempt | preempt | src/b.rs |

## Operators

| TLA+ operator | Rust function | File |
|---|---|---|
| Helper | helper | src/b.rs |

## Model-only actions

| TLA+ action | Why |
|---|---|
| Terminating | self-loop |
"#;

const SRC_A: &str = "/// Does one.\n/// TLA+: StepOne\n#[inline]\npub(crate) fn step_one() {}\n\n/// TLA+: StepTwo\nfn step_two(x: u8) {}\n";
const SRC_B: &str =
    "/// TLA+: Preempt\npub fn preempt() {}\n/// TLA+: Helper\npub(crate) fn helper() {}\n";

fn synth(spec: &str, map: &str, a: &str, b: &str) -> Vec<String> {
    check(
        &[("M.tla".into(), spec.into())],
        map,
        &[("src/a.rs".into(), a.into()), ("src/b.rs".into(), b.into())],
    )
}

#[test]
fn checker_parses_next_forms() {
    let a = spec_actions(SPEC);
    let want: BTreeSet<String> = ["StepOne", "StepTwo", "Preempt", "Terminating"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(a, want);
    assert!(
        synth(SPEC, MAP, SRC_A, SRC_B).is_empty(),
        "{:?}",
        synth(SPEC, MAP, SRC_A, SRC_B)
    );
}

/// `orig` with `from` replaced by `to`; `from` must occur (no vacuous case).
fn edit(orig: &str, from: &str, to: &str) -> String {
    assert!(orig.contains(from), "test case does not apply: {from:?}");
    orig.replacen(from, to, 1)
}

#[test]
fn checker_catches_a_rename_in_any_one_place() {
    let orphan = format!("{SRC_A}/// TLA+: Ghost\nfn ghost() {{}}\n");
    let cases = [
        (
            "spec action",
            synth(&edit(SPEC, "StepTwo(t)", "StepDeux(t)"), MAP, SRC_A, SRC_B),
        ),
        (
            "table action",
            synth(
                SPEC,
                &edit(MAP, "| StepTwo |", "| StepDeux |"),
                SRC_A,
                SRC_B,
            ),
        ),
        (
            "table function",
            synth(SPEC, &edit(MAP, "step_two()", "step_deux"), SRC_A, SRC_B),
        ),
        (
            "table file",
            synth(
                SPEC,
                &edit(MAP, "| helper | src/b.rs |", "| helper | src/a.rs |"),
                SRC_A,
                SRC_B,
            ),
        ),
        (
            "rust fn",
            synth(
                SPEC,
                MAP,
                &edit(SRC_A, "fn step_two", "fn step_deux"),
                SRC_B,
            ),
        ),
        (
            "rust tag",
            synth(
                SPEC,
                MAP,
                &edit(SRC_A, "TLA+: StepTwo", "TLA+: StepDeux"),
                SRC_B,
            ),
        ),
        (
            "tag not above fn",
            synth(
                SPEC,
                MAP,
                &edit(
                    SRC_A,
                    "/// TLA+: StepTwo\nfn",
                    "/// TLA+: StepTwo\nconst X: u8 = 1;\nfn",
                ),
                SRC_B,
            ),
        ),
        (
            "spec operator",
            synth(
                &edit(SPEC, "Helper(t) ==", "Helper2(t) =="),
                MAP,
                SRC_A,
                SRC_B,
            ),
        ),
        (
            "model-only action",
            synth(
                SPEC,
                &edit(MAP, "| Terminating |", "| Finished |"),
                SRC_A,
                SRC_B,
            ),
        ),
        (
            "spec model-only action",
            synth(
                &edit(SPEC, "NextStep \\/ Terminating", "NextStep \\/ Finished"),
                MAP,
                SRC_A,
                SRC_B,
            ),
        ),
        (
            "duplicate row",
            synth(
                SPEC,
                &edit(
                    MAP,
                    "| Terminating | self-loop |",
                    "| Terminating | self-loop |\n| StepOne | x |",
                ),
                SRC_A,
                SRC_B,
            ),
        ),
        ("orphan tag", synth(SPEC, MAP, &orphan, SRC_B)),
    ];
    for (what, errs) in cases {
        assert!(!errs.is_empty(), "a rename of the {what} went unnoticed");
    }
}
