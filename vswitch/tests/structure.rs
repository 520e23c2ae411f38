//! The shape of the source tree, checked: no import circle of more than one
//! file in any crate of the workspace, no datapath file over 600 lines, no
//! function over 100 lines. Plain text analysis of the sources (comments and
//! string literals stripped), so it needs no extra tool. A file imports
//! another when it names a path into it (`use` or inline, `pub use`
//! re-exports followed to the file that defines the item); `#[cfg(test)]`
//! code is left out (nothing imports a test). The failure lists each circle
//! with its edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates of the workspace and their root files (relative to the
/// workspace root).
const CRATES: &[(&str, &str)] =
    &[("vswitch", "vswitch/src/lib.rs"), ("offload", "offload/src/lib.rs"), ("benches", "benches/src/main.rs")];

const MAX_DATAPATH_FILE_LINES: usize = 600;
const MAX_FUNCTION_LINES: usize = 100;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Every `.rs` file of a crate's `src/`, binaries (their own crates) aside.
fn sources(src: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "bin") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The module path of a file under `src` (`a/mod.rs` and `a.rs` are `a`).
fn module_of(src: &Path, file: &Path, root: &Path) -> Vec<String> {
    if file == root {
        return Vec::new();
    }
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("file name");
    if last != "mod.rs" {
        parts.push(last.trim_end_matches(".rs").to_owned());
    }
    parts
}

/// The text with comments, string and char literals blanked (lengths and
/// line breaks kept).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |c: u8| if c == b'\n' { b'\n' } else { b' ' };
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    out.extend(b"  ");
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    out.extend(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if b[i] == b'r' && (b[i + 1..].starts_with(b"\"") || b[i + 1..].starts_with(b"#")) && raw_start(b, i) {
            // r"..." or r#"..."#
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            let mut end = b"\"".to_vec();
            end.extend(std::iter::repeat_n(b'#', hashes));
            out.push(b'r');
            i += 1 + hashes + 1;
            out.extend(std::iter::repeat_n(b' ', hashes + 1));
            while i < b.len() && !b[i..].starts_with(&end) {
                out.push(blank(b[i]));
                i += 1;
            }
            out.extend(std::iter::repeat_n(b' ', end.len().min(b.len() - i)));
            i += end.len();
        } else if b[i] == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    out.push(b' ');
                    out.push(blank(b[i + 1]));
                    i += 2;
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(b' ');
            i += 1;
        } else if b[i] == b'\'' && char_literal_len(&b[i..]) > 0 {
            let n = char_literal_len(&b[i..]);
            out.extend(std::iter::repeat_n(b' ', n));
            i += n;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The text without `#[cfg(test)]` items (blanked): test code is a leaf
/// nothing imports, and does not shape the library's layers. Returns the
/// names of test-only child modules declared as files (`#[cfg(test)] mod x;`).
fn without_tests(text: &str) -> (String, Vec<String>) {
    let mut out: Vec<char> = text.chars().collect();
    let mut test_mods = Vec::new();
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + marker.len() <= out.len() {
        if out[i..i + marker.len()] != marker[..] {
            i += 1;
            continue;
        }
        let start = i;
        let mut j = i + marker.len();
        let mut depth = 0i32;
        let mut opened = false;
        while j < out.len() {
            match out[j] {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                ';' if !opened => break,
                _ => {}
            }
            if opened && depth == 0 {
                break;
            }
            j += 1;
        }
        let item: String = out[start + marker.len()..j.min(out.len())].iter().collect();
        if !opened {
            let words: Vec<&str> = item.split_whitespace().collect();
            if let Some(k) = words.iter().position(|w| *w == "mod") {
                if let Some(name) = words.get(k + 1) {
                    test_mods.push(name.trim_end_matches(';').to_owned());
                }
            }
        }
        let stop = (j + 1).min(out.len());
        for c in &mut out[start..stop] {
            if *c != '\n' {
                *c = ' ';
            }
        }
        i = j + 1;
    }
    (out.into_iter().collect(), test_mods)
}

fn raw_start(b: &[u8], i: usize) -> bool {
    let ident_before = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
    !ident_before && b.get(i + 1 + hashes) == Some(&b'"')
}

/// Length of a char literal at the start of `b` ('a', '\n', '\''), 0 for a
/// lifetime.
fn char_literal_len(b: &[u8]) -> usize {
    if b.len() >= 4 && b[1] == b'\\' {
        return b[2..].iter().position(|&c| c == b'\'').map_or(0, |p| p + 3);
    }
    let ch = std::str::from_utf8(&b[1..b.len().min(6)]).ok().or_else(|| std::str::from_utf8(&b[1..2]).ok());
    match ch.and_then(|s| s.chars().next()) {
        Some(c) if b.get(1 + c.len_utf8()) == Some(&b'\'') => 2 + c.len_utf8(),
        _ => 0,
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Paths a file names, each as written (`crate::a::b`, `super::x`,
/// `child::y`), with how many inline `mod x { }` blocks enclose it. `use`
/// trees with braces are expanded.
fn paths(text: &str) -> Vec<(String, usize, bool)> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    // Inline module depth by position.
    let mut depth_at = vec![0usize; chars.len() + 1];
    let mut stack: Vec<bool> = Vec::new();
    let mut inline = 0usize;
    let mut i = 0;
    while i < chars.len() {
        depth_at[i] = inline;
        match chars[i] {
            '{' => {
                let before: String = chars[i.saturating_sub(80)..i].iter().collect();
                let is_mod = before.trim_end().rsplit(|c: char| !is_ident(c) && c != ' ').next().is_some_and(|tail| {
                    let w: Vec<&str> = tail.split_whitespace().collect();
                    w.len() >= 2 && w[w.len() - 2] == "mod"
                });
                stack.push(is_mod);
                if is_mod {
                    inline += 1;
                }
            }
            '}' => inline -= usize::from(stack.pop() == Some(true)),
            _ => {}
        }
        i += 1;
    }
    // use statements (possibly with brace trees).
    let mut search = 0;
    while let Some(pos) = text[search..].find("use ") {
        let at = search + pos;
        search = at + 4;
        let prev = text[..at].chars().next_back();
        if prev.is_some_and(is_ident) {
            continue;
        }
        let Some(end) = text[at..].find(';') else { break };
        let tree: String = text[at + 4..at + end].chars().filter(|c| !c.is_whitespace()).collect();
        let depth = depth_at[text[..at].chars().count()];
        let before = text[..at].trim_end();
        let public = before.ends_with("pub") || before.ends_with("pub(crate)") || before.ends_with("pub(super)");
        for p in expand(&tree) {
            out.push((p, depth, public));
        }
        search = at + end;
    }
    // Inline paths: ident(::ident)+ not preceded by an identifier or `::`.
    let mut i = 0;
    while i < chars.len() {
        if is_ident(chars[i]) && (i == 0 || (!is_ident(chars[i - 1]) && chars[i - 1] != ':')) {
            let start = i;
            let mut j = i;
            loop {
                while j < chars.len() && is_ident(chars[j]) {
                    j += 1;
                }
                if j + 2 < chars.len() && chars[j] == ':' && chars[j + 1] == ':' && is_ident(chars[j + 2]) {
                    j += 2;
                } else {
                    break;
                }
            }
            let s: String = chars[start..j].iter().collect();
            if s.contains("::") {
                out.push((s, depth_at[start], false));
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// `a::{b,c::{d,e}}` -> `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).trim_end_matches("::*").to_owned()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut last) = (0, 0);
    for (k, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[last..k]);
                last = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[last..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| {
            expand(p).into_iter().map(move |e| {
                if e == "self" {
                    prefix.trim_end_matches("::").to_owned()
                } else {
                    format!("{prefix}{e}")
                }
            })
        })
        .collect()
}

struct Crate {
    /// module path -> file
    modules: BTreeMap<Vec<String>, PathBuf>,
    /// file -> files it imports
    edges: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
}

/// What a file re-exports: the name it exports -> the absolute module path
/// of the item (`pub use views::SwitchStats` in `datapath` gives
/// `SwitchStats` -> `datapath::views::SwitchStats`).
type Reexports = BTreeMap<PathBuf, BTreeMap<String, Vec<String>>>;

/// The absolute module paths a file names (`super`, `self`, `crate` and
/// child modules resolved), each with whether a `pub use` names it; paths
/// into other crates are left out.
fn absolute_paths(modules: &BTreeMap<Vec<String>, PathBuf>, me: &[String], text: &str) -> Vec<(Vec<String>, bool)> {
    let mut out = Vec::new();
    for (path, inline_depth, public_use) in paths(text) {
        let segs: Vec<&str> = path.split("::").collect();
        let mut abs: Vec<String> = match segs[0] {
            "crate" => Vec::new(),
            "super" | "self" => {
                // `super` inside inline modules first climbs those.
                let mut base = me.to_vec();
                let climbs = segs.iter().take_while(|s| **s == "super").count();
                for _ in 0..climbs - climbs.min(inline_depth) {
                    base.pop();
                }
                base
            }
            first => {
                // A child module of this file named without `self::`.
                let mut child = me.to_vec();
                child.push(first.to_owned());
                if !modules.contains_key(&child) {
                    continue;
                }
                me.to_vec()
            }
        };
        abs.extend(segs.iter().skip_while(|s| matches!(**s, "crate" | "super" | "self")).map(|s| s.to_string()));
        out.push((abs, public_use));
    }
    out
}

fn analyse(root_rel: &str) -> Crate {
    let ws = workspace();
    let root = ws.join(root_rel);
    let src = root.parent().expect("src").to_path_buf();
    let mut texts = BTreeMap::new();
    let mut test_only: BTreeSet<Vec<String>> = BTreeSet::new();
    for f in sources(&src) {
        let (text, test_mods) = without_tests(&strip(&std::fs::read_to_string(&f).expect("read")));
        let me = module_of(&src, &f, &root);
        test_only.extend(test_mods.into_iter().map(|m| me.iter().cloned().chain([m]).collect::<Vec<_>>()));
        texts.insert(f, (me, text));
    }
    // Test-only files and everything under them are left out.
    texts.retain(|_, (me, _)| !test_only.iter().any(|t| me.starts_with(t)));
    let modules: BTreeMap<Vec<String>, PathBuf> = texts.iter().map(|(f, (me, _))| (me.clone(), f.clone())).collect();
    let named: BTreeMap<PathBuf, Vec<(Vec<String>, bool)>> =
        texts.iter().map(|(f, (me, text))| (f.clone(), absolute_paths(&modules, me, text))).collect();
    let mut reexports: Reexports = BTreeMap::new();
    for (file, list) in &named {
        for (abs, public_use) in list {
            if let (true, Some(last)) = (*public_use, abs.last()) {
                reexports.entry(file.clone()).or_default().insert(last.clone(), abs.clone());
            }
        }
    }
    let mut edges = BTreeMap::new();
    for (file, list) in &named {
        let to = list.iter().filter_map(|(abs, _)| resolve(&modules, &reexports, abs, file, 0)).collect();
        edges.insert(file.clone(), to);
    }
    Crate { modules, edges }
}

/// The file that defines what `path` names: the deepest file module it
/// falls in, followed through that module's re-exports; `None` when that
/// is `from` itself.
fn resolve(
    modules: &BTreeMap<Vec<String>, PathBuf>,
    reexports: &Reexports,
    path: &[String],
    from: &Path,
    hops: usize,
) -> Option<PathBuf> {
    let n = (1..=path.len()).rev().find(|n| modules.contains_key(&path[..*n]))?;
    let file = &modules[&path[..n]];
    if let (Some(item), true) = (path.get(n), hops < 8) {
        if let Some(target) = reexports.get(file).and_then(|r| r.get(item)) {
            if target.as_slice() != path {
                let mut next = target.clone();
                next.extend(path[n + 1..].iter().cloned());
                return resolve(modules, reexports, &next, from, hops + 1);
            }
        }
    }
    Some(file.clone()).filter(|f| f.as_path() != from)
}

/// Strongly connected components with more than one file (Tarjan).
fn circles(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct T<'a> {
        edges: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a Path, usize>,
        low: BTreeMap<&'a Path, usize>,
        on: BTreeSet<&'a Path>,
        stack: Vec<&'a Path>,
        out: Vec<Vec<PathBuf>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Path) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.edges.get(v).into_iter().flatten() {
            let w = w.as_path();
            if !t.index.contains_key(w) {
                visit(t, w);
                let l = t.low[w].min(t.low[v]);
                t.low.insert(v, l);
            } else if t.on.contains(w) {
                let l = t.index[w].min(t.low[v]);
                t.low.insert(v, l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_path_buf());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on: BTreeSet::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_path()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(workspace()).unwrap_or(p).display().to_string()
}

#[test]
fn no_import_circle_of_more_than_one_file() {
    let mut report = Vec::new();
    for (name, root) in CRATES {
        let c = analyse(root);
        assert!(c.modules.len() > 3, "{name}: the analysis found its files");
        for comp in circles(&c.edges) {
            let mut lines = vec![format!("{name}: a circle of {} files:", comp.len())];
            for f in &comp {
                let within: Vec<String> = c.edges[f].iter().filter(|t| comp.contains(t)).map(|t| rel(t)).collect();
                lines.push(format!("  {} -> {}", rel(f), within.join(", ")));
            }
            report.push(lines.join("\n"));
        }
    }
    assert!(report.is_empty(), "import circles:\n{}", report.join("\n"));
}

/// The analysis itself finds a circle it is shown.
#[test]
fn the_circle_finder_finds_circles() {
    let a = PathBuf::from("a.rs");
    let b = PathBuf::from("b.rs");
    let c = PathBuf::from("c.rs");
    let edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> =
        [(a.clone(), [b.clone()].into()), (b.clone(), [a.clone()].into()), (c.clone(), [a.clone()].into())].into();
    assert_eq!(circles(&edges), vec![vec![a, b]]);
    let text =
        strip("use super::{x, y::{z, self}};\nmod tests { use super::*; fn f() { crate::q::r(); } }\n// crate::no\n");
    let (untested, test_mods) = without_tests(
        "use a::b;\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod inline { use crate::t::u; }\nfn f() {}\n",
    );
    assert_eq!(test_mods, vec!["tests".to_owned()]);
    assert!(untested.contains("use a::b;") && untested.contains("fn f() {}") && !untested.contains("crate::t"));
    let found = paths(&text);
    assert!(found.contains(&("super::x".to_owned(), 0, false)), "{found:?}");
    assert!(found.contains(&("super::y::z".to_owned(), 0, false)), "{found:?}");
    assert!(found.contains(&("super::y".to_owned(), 0, false)), "{found:?}");
    assert!(found.contains(&("super".to_owned(), 1, false)), "{found:?}");
    assert!(found.contains(&("crate::q::r".to_owned(), 1, false)), "{found:?}");
    assert!(!found.iter().any(|(p, _, _)| p.contains("no")), "{found:?}");
}

/// Functions (`fn` items, closures aside) and their length in lines.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let Some(at) = t.find("fn ") else { continue };
        let head = &t[..at];
        let is_item = head.split_whitespace().all(|w| {
            matches!(w, "pub" | "const" | "async" | "unsafe" | "extern" | "default")
                || w.starts_with("pub(")
                || w.starts_with('"')
        });
        if !is_item {
            continue;
        }
        let name: String = t[at + 3..].chars().take_while(|&c| is_ident(c)).collect();
        // The body: from the first `{` at or after the signature to its match.
        let mut depth = 0i32;
        let mut opened = false;
        let mut end = None;
        'scan: for (k, l) in lines.iter().enumerate().skip(n) {
            for c in l.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    ';' if !opened && depth == 0 => break 'scan,
                    _ => {}
                }
                if opened && depth == 0 {
                    end = Some(k);
                    break 'scan;
                }
            }
        }
        if let Some(e) = end {
            out.push((name, n + 1, e - n + 1));
        }
    }
    out
}

#[test]
fn no_function_over_100_lines_and_no_datapath_file_over_600() {
    let ws = workspace();
    let mut over = Vec::new();
    let mut all = Vec::new();
    for dir in ["vswitch/src", "offload/src", "benches/src"] {
        all.extend(sources(&ws.join(dir)));
    }
    all.extend(sources(&ws.join("vswitch/src/bin")));
    for file in &all {
        let text = strip(&std::fs::read_to_string(file).expect("read"));
        for (name, line, len) in functions(&text) {
            if len > MAX_FUNCTION_LINES {
                over.push(format!("{}:{line}: fn {name} has {len} lines (at most {MAX_FUNCTION_LINES})", rel(file)));
            }
        }
        let lines = text.lines().count();
        if rel(file).starts_with("vswitch/src/datapath/") && lines > MAX_DATAPATH_FILE_LINES {
            over.push(format!("{}: {lines} lines (a datapath file has at most {MAX_DATAPATH_FILE_LINES})", rel(file)));
        }
    }
    assert!(all.len() > 50, "the sources were found");
    assert!(over.is_empty(), "over the size limits:\n{}", over.join("\n"));
}
