//! Tidy checks on `src/`, in the spirit of rust-analyzer's tidy tests (std only): no import cycle
//! between files of the library crate, a `//!` first line in every file, no non-test file over
//! [`MAX_LINES`] lines.
//!
//! `A -> B` when file A names something through a path that resolves to file B: `use` trees and
//! inline paths headed by `crate`, `super`, `self`, a child module of A, or a name one of A's
//! `use`s brings in, resolved to the deepest module that is a file. `mod x;` is not an edge;
//! comments, literals, `#[cfg(test)]` items and files declared under `#[cfg(test)]` are skipped.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a test or benchmark: failing loudly and printing results is its job"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const MAX_LINES: usize = 600;

/// Source files by path relative to the package (`src/a/b.rs`).
type Files = BTreeMap<String, String>;
/// `(from, to)` -> the paths through which `from` names `to`.
type Edges = BTreeMap<(String, String), BTreeSet<String>>;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Sep, // `::`
    Punct(char),
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The first index from `i` on whose char fails `f`.
fn skip(c: &[char], i: usize, f: impl Fn(char) -> bool) -> usize {
    i + c[i.min(c.len())..].iter().take_while(|&&x| f(x)).count()
}

/// Tokens of Rust source, without comments, numbers, lifetimes and char literals.
fn lex(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let (mut out, mut i) = (Vec::new(), 0);
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            i = skip(&c, i, |x| x != '\n');
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0; // block comments nest
            while i < c.len() {
                match (c[i], at(i + 1)) {
                    ('/', '*') => (depth, i) = (depth + 1, i + 2),
                    ('*', '/') => (depth, i) = (depth - 1, i + 2),
                    _ => i += 1,
                }
                if depth == 0 {
                    break;
                }
            }
        } else if ch == '"' {
            i = string(&c, i + 1, None, &mut out);
        } else if ch == '\'' {
            i = match (at(i + 1), at(i + 2)) {
                ('\\', _) => skip(&c, i + 3, |x| x != '\'') + 1, // '\n', '\'', '\u{..}'
                (_, '\'') => i + 3,
                _ => skip(&c, i + 1, is_ident), // a lifetime or a label
            };
        } else if ch.is_ascii_digit() {
            i = skip(&c, i, is_ident);
        } else if is_ident(ch) {
            let start = i;
            i = skip(&c, i, is_ident);
            let word: String = c[start..i].iter().collect();
            let hashes = skip(&c, i, |x| x == '#') - i;
            if matches!(word.as_str(), "r" | "br" | "cr") && at(i + hashes) == '"' {
                i = string(&c, i + hashes + 1, Some(hashes), &mut out);
            } else if word == "r" && hashes == 1 && is_ident(at(i + 1)) {
                let start = i + 1; // a raw identifier: `r#type`
                i = skip(&c, start, is_ident);
                out.push(Tok::Ident(c[start..i].iter().collect()));
            } else if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = string(&c, i + 1, None, &mut out);
            } else if !(word == "b" && at(i) == '\'') {
                out.push(Tok::Ident(word));
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Tok::Sep);
            i += 2;
        } else {
            out.push(Tok::Punct(ch));
            i += 1;
        }
    }
    out
}

/// Lexes a string body from `i` (after the opening quote); `raw` is the number of `#`s of a raw
/// string. Returns the index after the literal.
fn string(c: &[char], mut i: usize, raw: Option<usize>, out: &mut Vec<Tok>) -> usize {
    let start = i;
    while i < c.len() {
        match (c[i], raw) {
            ('\\', None) => i += 2,
            ('"', None) => break,
            ('"', Some(n)) if skip(c, i + 1, |h| h == '#') - (i + 1) >= n => break,
            _ => i += 1,
        }
    }
    let end = i.min(c.len());
    out.push(Tok::Str(c[start..end].iter().collect()));
    end + 1 + raw.unwrap_or(0)
}

fn punct(t: &[Tok], i: usize, c: char) -> bool {
    t.get(i) == Some(&Tok::Punct(c))
}

fn ident(t: &[Tok], i: usize) -> Option<String> {
    match t.get(i) {
        Some(Tok::Ident(w)) => Some(w.clone()),
        _ => None,
    }
}

fn word(t: &[Tok], i: usize, w: &str) -> bool {
    ident(t, i).is_some_and(|x| x == w)
}

/// Index of the bracket closing the one at `open` (or the end).
fn matching(t: &[Tok], open: usize) -> usize {
    let mut depth = 0;
    for (i, tok) in t.iter().enumerate().skip(open) {
        match tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') if depth == 1 => return i,
            Tok::Punct(')' | ']' | '}') => depth -= 1,
            _ => {}
        }
    }
    t.len()
}

/// Index after the item (or field, or argument) starting at `i`; stops before an enclosing bracket.
fn skip_item(t: &[Tok], mut i: usize) -> usize {
    let mut depth = 0;
    while i < t.len() {
        match t[i] {
            Tok::Punct('{') if depth == 0 => return matching(t, i) + 1,
            Tok::Punct(';' | ',') if depth == 0 => return i + 1,
            Tok::Punct(')' | ']' | '}') if depth == 0 => return i,
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Parses one use tree at `i` under `prefix`, pushing `(path, name brought in)` for each leaf.
fn use_tree(t: &[Tok], mut i: usize, prefix: &[String], out: &mut Vec<(Vec<String>, Option<String>)>) -> usize {
    let mut path = prefix.to_vec();
    while let Some(w) = ident(t, i) {
        path.push(w);
        i += 1;
        if t.get(i) != Some(&Tok::Sep) {
            break;
        }
        i += 1;
    }
    if punct(t, i, '*') {
        out.push((path, None));
        return i + 1;
    }
    if punct(t, i, '{') {
        i += 1;
        while i < t.len() && !punct(t, i, '}') {
            i = use_tree(t, i, &path, out).max(i + 1);
            i += usize::from(punct(t, i, ','));
        }
        return i + 1;
    }
    let leaf = path.len() > prefix.len();
    if path.len() > 1 && path.last().is_some_and(|s| s == "self") {
        path.pop(); // `a::{self}` names `a`
    }
    let mut name = path.last().cloned();
    if word(t, i, "as") {
        name = ident(t, i + 1).filter(|n| n != "_");
        i += 2;
    }
    if leaf {
        out.push((path, name));
    }
    i
}

/// A `mod NAME` declaration: `inline` for `mod NAME { .. }`; `scope`: the inline modules around it.
#[derive(Debug)]
struct Decl {
    name: String,
    scope: Vec<String>,
    inline: bool,
    test: bool,
    path_attr: Option<String>,
}

/// What one file names, each path as written with the inline modules around it (`scope`); a
/// `use` leaf also carries the name it brings in.
#[derive(Debug, Default)]
struct Scan {
    refs: Vec<(Vec<String>, Vec<String>, Option<String>)>,
    decls: Vec<Decl>,
}

fn scan(src: &str) -> Scan {
    let t = lex(src);
    let mut s = Scan::default();
    let mut blocks: Vec<Option<String>> = Vec::new(); // per open `{`: the inline module it opens
    let (mut test, mut path_attr, mut i) = (false, None, 0);
    while i < t.len() {
        let scope: Vec<String> = blocks.iter().flatten().cloned().collect();
        if punct(&t, i, '#') && punct(&t, i + 1, '[') {
            let close = matching(&t, i + 1);
            match &t[i + 2..close.min(t.len())] {
                [Tok::Ident(c), Tok::Punct('('), Tok::Ident(x), Tok::Punct(')')] if c == "cfg" && x == "test" => {
                    test = true
                }
                [Tok::Ident(p), Tok::Punct('='), Tok::Str(v)] if p == "path" => path_attr = Some(v.clone()),
                _ => {}
            }
            i = close + 1;
            continue;
        }
        let (was_test, attr) = (std::mem::take(&mut test), path_attr.take());
        // `[pub[(..)]] mod NAME`
        let mut m = i + usize::from(word(&t, i, "pub"));
        if m > i && punct(&t, m, '(') {
            m = matching(&t, m) + 1;
        }
        if let (true, Some(Tok::Ident(name))) = (word(&t, m, "mod"), t.get(m + 1)) {
            let inline = punct(&t, m + 2, '{');
            let (test, path_attr) = (was_test, attr);
            s.decls.push(Decl {
                name: name.clone(),
                scope,
                inline,
                test,
                path_attr,
            });
            i = match (inline, was_test) {
                (true, true) => matching(&t, m + 2) + 1,
                (true, false) => {
                    blocks.push(Some(name.clone()));
                    m + 3
                }
                (false, _) => m + 2,
            };
            continue;
        }
        if was_test {
            i = skip_item(&t, i);
            continue;
        }
        let prev = i.checked_sub(1).and_then(|p| t.get(p));
        match &t[i] {
            Tok::Punct('{') => blocks.push(None),
            Tok::Punct('}') => drop(blocks.pop()),
            Tok::Ident(w) if w == "use" && !punct(&t, i + 1, '<') => {
                let mut leaves = Vec::new();
                i = use_tree(&t, i + 1, &[], &mut leaves);
                s.refs.extend(leaves.into_iter().map(|(p, n)| (scope.clone(), p, n)));
                continue;
            }
            Tok::Ident(w) if t.get(i + 1) == Some(&Tok::Sep) && !matches!(prev, Some(Tok::Sep | Tok::Punct('.'))) => {
                let visibility = i >= 2 && word(&t, i - 1, "in") && punct(&t, i - 2, '('); // `pub(in crate::x)`
                let mut path = vec![w.clone()];
                while let (Some(Tok::Sep), Some(Tok::Ident(seg))) = (t.get(i + 1), t.get(i + 2)) {
                    path.push(seg.clone());
                    i += 2;
                }
                if !visibility {
                    s.refs.push((scope, path, None));
                }
            }
            _ => {}
        }
        i += 1;
    }
    s
}

#[derive(Debug, Default)]
struct Graph {
    nodes: Vec<String>,
    test_files: BTreeSet<String>,
    edges: Edges,
}

/// The import graph of the library crate: its files are those that `mod` declarations reach from
/// `src/lib.rs` (honouring `#[path]`); those declared under `#[cfg(test)]` are `test_files`.
fn graph(files: &Files) -> Graph {
    let scans: BTreeMap<&str, Scan> = files.iter().map(|(f, text)| (f.as_str(), scan(text))).collect();
    let mut modules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut g = Graph::default();
    let mut queue = vec![("src/lib.rs".to_string(), Vec::new(), false)];
    while let Some((file, path, test)) = queue.pop() {
        let Some(scan) = scans.get(file.as_str()).filter(|_| !modules.contains_key(&file)) else {
            continue;
        };
        let (dir, name) = file.rsplit_once('/').unwrap_or(("", &file));
        let children_dir = match name {
            "lib.rs" | "mod.rs" => dir.to_string(),
            _ => format!("{dir}/{}", name.trim_end_matches(".rs")),
        };
        for d in scan.decls.iter().filter(|d| !d.inline) {
            let (n, inline_dirs) = (&d.name, d.scope.iter().map(|s| format!("/{s}")).collect::<String>());
            let base = format!("{children_dir}{inline_dirs}");
            let by_name = [format!("{base}/{n}.rs"), format!("{base}/{n}/mod.rs")];
            let found = by_name.into_iter().find(|f| files.contains_key(f));
            let by_attr = d.path_attr.as_ref().map(|p| format!("{dir}/{p}"));
            let child = by_attr.or(found).unwrap_or_default();
            let child_path = path.iter().chain(&d.scope).chain([n]).cloned().collect();
            queue.push((child, child_path, test || d.test));
        }
        if test {
            g.test_files.insert(file.clone());
        } else {
            g.nodes.push(file.clone());
        }
        modules.insert(file, path);
    }
    g.nodes.sort();
    let index: BTreeMap<&[String], &String> = g.nodes.iter().map(|f| (modules[f].as_slice(), f)).collect();
    for file in &g.nodes {
        let (here, scan) = (&modules[file], &scans[file.as_str()]);
        let resolve = |scope: &[String], p: &[String], aliases: &BTreeMap<&str, Vec<String>>| {
            let base: Vec<String> = here.iter().chain(scope).cloned().collect();
            let head = p.first()?.as_str();
            let ups = p.iter().take_while(|s| *s == "super").count();
            let (keep, rest): (&[String], &[String]) = match head {
                "crate" => (&[], &p[1..]),
                "self" => (&base, &p[1..]),
                "super" => (&base[..base.len().checked_sub(ups)?], &p[ups..]),
                _ if scan.decls.iter().any(|d| d.name == head && d.scope == scope) => (&base, p),
                _ => (aliases.get(head)?, &p[1..]),
            };
            Some(keep.iter().chain(rest).cloned().collect::<Vec<_>>())
        };
        let mut aliases = BTreeMap::new();
        for (scope, p, name) in &scan.refs {
            if let (Some(abs), Some(name)) = (resolve(scope, p, &BTreeMap::new()), name) {
                aliases.insert(name.as_str(), abs);
            }
        }
        for abs in scan.refs.iter().filter_map(|(scope, p, _)| resolve(scope, p, &aliases)) {
            // The deepest module that is a file, and the item named in it (`Kind`, not `Kind::A`).
            let found = (0..=abs.len()).rev().find_map(|k| Some((k, *index.get(&abs[..k])?)));
            if let Some((k, target)) = found.filter(|(_, t)| *t != file) {
                let item = abs.iter().take(k + 1).map(String::as_str);
                let shown = ["crate"].into_iter().chain(item).collect::<Vec<_>>().join("::");
                g.edges.entry((file.clone(), target.clone())).or_default().insert(shown);
            }
        }
    }
    g
}

type Adj<'a> = BTreeMap<&'a str, Vec<&'a str>>;

/// Depth-first from `v`: pushes each newly reached node once all it reaches is done.
fn dfs<'a>(v: &'a str, adj: &Adj<'a>, seen: &mut BTreeSet<&'a str>, out: &mut Vec<&'a str>) {
    if seen.insert(v) {
        for &w in adj.get(v).into_iter().flatten() {
            dfs(w, adj, seen, out);
        }
        out.push(v);
    }
}

/// Strongly connected components (Kosaraju), each sorted, in a stable order.
fn sccs(nodes: &[String], edges: &Edges) -> Vec<Vec<String>> {
    let (mut forward, mut backward) = (Adj::new(), Adj::new());
    for (a, b) in edges.keys() {
        forward.entry(a.as_str()).or_default().push(b.as_str());
        backward.entry(b.as_str()).or_default().push(a.as_str());
    }
    let (mut seen, mut finished) = (BTreeSet::new(), Vec::new());
    for v in nodes {
        dfs(v, &forward, &mut seen, &mut finished);
    }
    let (mut seen, mut comps) = (BTreeSet::new(), Vec::new());
    for v in finished.into_iter().rev() {
        let mut comp = Vec::new();
        dfs(v, &backward, &mut seen, &mut comp);
        let mut comp: Vec<String> = comp.into_iter().map(String::from).collect();
        comp.sort();
        comps.extend(Some(comp).filter(|c| !c.is_empty()));
    }
    comps.sort();
    comps
}

/// Every cycle (component of more than one file), with the edges inside it and what they name.
fn cycle_report(g: &Graph) -> String {
    let mut report = String::new();
    let cycles = sccs(&g.nodes, &g.edges).into_iter().filter(|c| c.len() > 1);
    for (n, comp) in cycles.enumerate() {
        report += &format!("cycle {}: {} files: {}\n", n + 1, comp.len(), comp.join(", "));
        let within = |f: &String| comp.contains(f);
        for ((a, b), names) in g.edges.iter().filter(|((a, b), _)| within(a) && within(b)) {
            let names = names.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
            report += &format!("  {a} -> {b} ({names})\n");
        }
    }
    report
}

fn read_src() -> Files {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (mut files, mut dirs) = (Files::new(), vec![root.join("src")]);
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).expect("a readable dir");
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).expect("in the package").to_string_lossy();
                let text = std::fs::read_to_string(&path).expect("a readable file");
                files.insert(rel.replace('\\', "/"), text);
            }
        }
    }
    files
}

#[test]
fn no_import_cycles_between_files() {
    let report = cycle_report(&graph(&read_src()));
    assert!(report.is_empty(), "import cycles, cut one edge of each:\n{report}");
}

fn assert_none(rule: &str, offenders: Vec<String>) {
    assert!(offenders.is_empty(), "{rule}:\n{}", offenders.join("\n"));
}

#[test]
fn every_file_starts_with_an_inner_doc_comment() {
    let first_line = |text: &str| text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
    let files = read_src().into_iter().map(|(file, text)| (file, first_line(&text)));
    let bad = files.filter(|(_, l)| !l.starts_with("//!"));
    assert_none("first line not `//!`", bad.map(|(f, l)| f + ": " + &l).collect());
}

#[test]
fn no_long_non_test_files() {
    let files = read_src();
    let tests = graph(&files).test_files;
    let lines = files.iter().map(|(file, text)| (file, text.lines().count()));
    let long = lines.filter(|(file, n)| !tests.contains(*file) && *n > MAX_LINES);
    let shown = long.map(|(file, n)| format!("{file}: {n}")).collect();
    assert_none(&format!("over {MAX_LINES} lines"), shown);
}

/// One `path: source` a line, `\n` in the source for a line break.
fn graph_of(spec: &str) -> Graph {
    let file = |(f, t): (&str, &str)| (f.to_string(), format!("//! x\n{}", t.replace("\\n", "\n")));
    let lines = spec.lines().filter_map(|l| l.trim().split_once(": "));
    graph(&lines.map(file).collect())
}

/// The edges as `a.rs -> b.rs`, paths under `src/`.
fn edges(g: &Graph) -> Vec<String> {
    let edge = |(a, b): &(String, String)| format!("{a} -> {b}").replace("src/", "");
    g.edges.keys().map(edge).collect()
}

#[test]
fn a_three_file_cycle_is_found() {
    let g = graph_of(
        r"src/lib.rs: pub mod a; pub mod b; mod c;
         src/a.rs: use crate::b::B;
         src/b.rs: pub(crate) use super::c::C;
         src/c.rs: fn f() { crate::a::go(); }",
    );
    let report = cycle_report(&g);
    let files = "src/a.rs, src/b.rs, src/c.rs";
    assert!(report.starts_with(&format!("cycle 1: 3 files: {files}\n")), "{report}");
    assert!(report.contains("  src/c.rs -> src/a.rs (crate::a::go)\n"), "{report}");
    assert!(!report.contains("cycle 2"), "{report}");
}

#[test]
fn declaring_a_module_is_not_an_edge() {
    let g = graph_of(
        r"src/lib.rs: pub mod a;
         src/a/mod.rs: mod b;\npub(crate) mod c;
         src/a/b.rs: use super::X;
         src/a/c.rs: fn f() {}",
    );
    assert_eq!(edges(&g), ["a/b.rs -> a/mod.rs"]);
    assert_eq!(cycle_report(&g), "");
}

#[test]
fn paths_in_strings_and_comments_are_ignored() {
    let g = graph_of(
        r##"src/lib.rs: mod a; mod b;
            src/b.rs: use crate::a;
            src/a.rs: // use crate::b::X;\n/* crate::b::Y /* nested */ crate::b::Z */ const S: &str = "crate::b::S \" crate::b::T"; const R: &str = r#"crate::b::R "q" "#; const C: char = '"'; fn f<'a>(x: &'a str) -> u8 { b'\'' } const L: &str = "crate::b::L";"##,
    );
    assert_eq!(edges(&g), ["b.rs -> a.rs"]);
}

#[test]
fn a_grouped_use_tree_yields_every_edge() {
    let g = graph_of(
        r"src/lib.rs: mod a; mod b; mod c; mod e;
         src/a.rs: pub(crate) use crate::{b::B, c::{self, d::{D, E as F}}, e::*};
         src/b.rs: struct B;
         src/c.rs: pub mod d;
         src/c/d.rs: struct D;
         src/e.rs: struct E;",
    );
    assert_eq!(
        edges(&g),
        ["a.rs -> b.rs", "a.rs -> c.rs", "a.rs -> c/d.rs", "a.rs -> e.rs"]
    );
    let names = &g.edges[&("src/a.rs".to_string(), "src/c/d.rs".to_string())];
    assert_eq!(names.iter().collect::<Vec<_>>(), ["crate::c::d::D", "crate::c::d::E"]);
}

#[test]
fn test_blocks_and_test_files_are_ignored() {
    let g = graph_of(
        r#"src/lib.rs: pub mod a; mod b; mod c;
           src/a.rs: #[cfg(test)] mod tests { use crate::b::B; }\n#[cfg(test)]\n#[path = "a_tests.rs"]\nmod more;
           src/a_tests.rs: use crate::b::X;
           src/b.rs: use crate::a::A;\n#[cfg(test)]\nuse crate::c::C;
           src/c.rs: struct C;"#,
    );
    assert_eq!(edges(&g), ["b.rs -> a.rs"]);
    assert!(g.test_files.contains("src/a_tests.rs"));
}

#[test]
fn names_brought_in_by_use_and_child_modules_resolve_deep() {
    let g = graph_of(
        r"src/lib.rs: pub mod l; mod e; pub use l::Kind;
         src/l/mod.rs: pub mod r;\npub mod env { use super::X; }
         src/l/r.rs: fn go() {}
         src/e.rs: use crate::l;\nfn f() { l::r::go(); }",
    );
    assert_eq!(edges(&g), ["e.rs -> l/mod.rs", "e.rs -> l/r.rs", "lib.rs -> l/mod.rs"]);
}
