//! A crate's module graph, read from its sources: which of its top-level modules names which
//! other (`crate::m`, `crate::{m, …}`, or a `super::` path that climbs to the crate root), so that a crate's test can
//! insist its modules import one way only — no module imports a module that imports it back,
//! directly or around a longer ring.
//!
//! The reading is lexical: comments and string and character literals are skipped, paths inside
//! macro calls count, and a name counts only when it is one of the crate's file modules
//! (`crate::Result`, a re-export from the crate root, does not).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where one module first names another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleUse {
    pub file: String,
    /// 1-based.
    pub line: usize,
}

/// Each module → the crate's other modules it names, with the first place it names each.
pub type ModuleGraph = BTreeMap<String, BTreeMap<String, ModuleUse>>;

/// The graph of the top-level modules of a crate (`src/m.rs`, or a folder `src/m/` whose files
/// all count as `m`; the root, `lib.rs` or `main.rs`, is left out: it declares every module).
pub fn module_graph(src: &Path) -> ModuleGraph {
    // Module → its files, each with how many modules deep below the top-level one it sits
    // (what a `super::` path must climb before it reaches the crate root).
    let mut modules: BTreeMap<String, Vec<(PathBuf, usize)>> = BTreeMap::new();
    let entries =
        std::fs::read_dir(src).unwrap_or_else(|e| panic!("cannot list {} ({e})", src.display()));
    for entry in entries {
        let path = entry.expect("a readable folder entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()).map(String::from) else {
            continue;
        };
        if path.is_dir() {
            let files = modules.entry(stem).or_default();
            collect_rs_files(&path, 0, files);
        } else if path.extension().and_then(|s| s.to_str()) == Some("rs")
            && stem != "lib"
            && stem != "main"
        {
            modules.entry(stem).or_default().push((path, 0));
        }
    }
    let mut graph = ModuleGraph::new();
    for (module, files) in &modules {
        let uses = graph.entry(module.clone()).or_default();
        for (path, depth) in files {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("cannot read {} ({e})", path.display()));
            let file = path
                .strip_prefix(src)
                .unwrap_or(path)
                .to_string_lossy()
                .into_owned();
            for (name, line) in named_modules(&tokens(&text), *depth) {
                if name != *module && modules.contains_key(&name) {
                    uses.entry(name).or_insert_with(|| ModuleUse {
                        file: file.clone(),
                        line,
                    });
                }
            }
        }
    }
    graph
}

/// The `.rs` files under a module folder whose own module sits `depth` below the top-level one:
/// its `mod.rs` at that depth, every other file and sub-folder one deeper.
fn collect_rs_files(dir: &Path, depth: usize, out: &mut Vec<(PathBuf, usize)>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {} ({e})", dir.display()));
    for entry in entries {
        let path = entry.expect("a readable folder entry").path();
        if path.is_dir() {
            collect_rs_files(&path, depth + 1, out);
        } else if path.extension().and_then(|s| s.to_str()) == Some("rs") {
            let is_mod = path.file_name().and_then(|s| s.to_str()) == Some("mod.rs");
            out.push((path, if is_mod { depth } else { depth + 1 }));
        }
    }
}

/// One cycle of the graph, as the modules around it with the first repeated at the end
/// (`[a, b, a]`), or `None` when the modules import one way only.
pub fn find_cycle(graph: &ModuleGraph) -> Option<Vec<String>> {
    fn visit<'g>(
        graph: &'g ModuleGraph,
        module: &'g str,
        path: &mut Vec<&'g str>,
        finished: &mut BTreeSet<&'g str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| *m == module) {
            let mut cycle: Vec<String> = path[at..].iter().map(|m| m.to_string()).collect();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if finished.contains(module) {
            return None;
        }
        path.push(module);
        for next in graph.get(module).into_iter().flat_map(|uses| uses.keys()) {
            if let Some(cycle) = visit(graph, next, path, finished) {
                return Some(cycle);
            }
        }
        path.pop();
        finished.insert(module);
        None
    }
    let mut finished = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(graph, m, &mut Vec::new(), &mut finished))
}

/// Fails, naming a cycle and the line of each import around it, when modules of the crate at
/// `src` import each other.
pub fn assert_no_module_cycle(src: &Path) {
    let graph = module_graph(src);
    if let Some(cycle) = find_cycle(&graph) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                let at = &graph[&w[0]][&w[1]];
                format!("  {} → {}  ({}:{})", w[0], w[1], at.file, at.line)
            })
            .collect();
        panic!(
            "modules of {} import each other: {}\n{}\nmove what they share down into one of them \
             (or a module below both) so that imports point one way",
            src.display(),
            cycle.join(" → "),
            steps.join("\n")
        );
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

/// The tokens of Rust source that matter for paths, each with its line; comments and the
/// contents of string and character literals are dropped.
fn tokens(text: &str) -> Vec<(Token, usize)> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    // Skips to just past `end` (which must start at or after `from`), counting lines.
    let skip_past = |from: usize, end: &str, line: &mut usize| -> usize {
        let end: Vec<char> = end.chars().collect();
        let mut j = from;
        while j < c.len() && !c[j..].starts_with(&end) {
            *line += usize::from(c[j] == '\n');
            j += 1;
        }
        j + end.len()
    };
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        match ch {
            '\n' => {
                line += 1;
                i += 1;
            }
            _ if ch.is_whitespace() => i += 1,
            '/' if next == Some('/') => i = skip_past(i, "\n", &mut line) - 1,
            '/' if next == Some('*') => {
                // Block comments nest.
                let mut depth = 0;
                loop {
                    if c[i..].starts_with(&['/', '*']) {
                        depth += 1;
                        i += 2;
                    } else if c[i..].starts_with(&['*', '/']) {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else if i >= c.len() {
                        break;
                    } else {
                        line += usize::from(c[i] == '\n');
                        i += 1;
                    }
                }
            }
            '"' => {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    if c[i] == '\\' {
                        i += 1;
                    }
                    line += usize::from(c.get(i) == Some(&'\n'));
                    i += 1;
                }
                i += 1;
            }
            // An escaped character literal (`'\n'`, `'\''`, `'\u{7f}'`).
            '\'' if next == Some('\\') => i = skip_past(i + 3, "'", &mut line),
            // A plain character literal (`'{'`); otherwise a lifetime's quote.
            '\'' if c.get(i + 2) == Some(&'\'') => i += 3,
            ':' if next == Some(':') => {
                out.push((Token::PathSep, line));
                i += 2;
            }
            _ if ch.is_alphanumeric() || ch == '_' => {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                let hashes = c[i..].iter().take_while(|&&h| h == '#').count();
                if (word == "r" || word == "br") && c.get(i + hashes) == Some(&'"') {
                    // A raw string: no escapes, ends at `"` and as many `#`.
                    let end = format!("\"{}", "#".repeat(hashes));
                    i = skip_past(i + hashes + 1, &end, &mut line);
                } else {
                    out.push((Token::Ident(word), line));
                }
            }
            _ => {
                out.push((Token::Punct(ch), line));
                i += 1;
            }
        }
    }
    out
}

/// Every name that follows a path to the crate root (`crate::`, or as many `super::` as lead
/// out of the inline modules around it and the `file_depth` modules the file sits in below the
/// top-level one), with its line; a group `{a, b::c}` gives each head.
fn named_modules(tokens: &[(Token, usize)], file_depth: usize) -> Vec<(String, usize)> {
    let is = |k: usize, t: &Token| tokens.get(k).is_some_and(|(x, _)| x == t);
    let ident = |k: usize| match tokens.get(k) {
        Some((Token::Ident(w), _)) => Some(w.as_str()),
        _ => None,
    };
    let mut names = Vec::new();
    let mut depth = 0usize;
    // The brace depth inside each inline `mod name { … }` now open.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut k = 0;
    while k < tokens.len() {
        match &tokens[k].0 {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                if inline_mods.last() == Some(&depth) {
                    inline_mods.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Token::Ident(w)
                if w == "mod" && ident(k + 1).is_some() && is(k + 2, &Token::Punct('{')) =>
            {
                inline_mods.push(depth + 1);
            }
            Token::Ident(w) if (w == "crate" || w == "super") && is(k + 1, &Token::PathSep) => {
                let mut j = k + 2;
                let at_root = if w == "crate" {
                    true
                } else {
                    let mut supers = 1;
                    while ident(j) == Some("super") && is(j + 1, &Token::PathSep) {
                        supers += 1;
                        j += 2;
                    }
                    supers > inline_mods.len() + file_depth
                };
                if at_root {
                    names.extend(path_heads(&tokens[j..]));
                }
                k = j;
                continue;
            }
            _ => {}
        }
        k += 1;
    }
    names
}

/// The first segment of a path that starts at `tokens[0]`: one name, or each head of a group.
fn path_heads(tokens: &[(Token, usize)]) -> Vec<(String, usize)> {
    match tokens.first() {
        Some((Token::Ident(w), line)) => vec![(w.clone(), *line)],
        Some((Token::Punct('{'), _)) => {
            let mut heads = Vec::new();
            let (mut level, mut at_head) = (0usize, false);
            for (t, line) in tokens {
                match t {
                    Token::Punct('{') => {
                        level += 1;
                        at_head = level == 1;
                    }
                    Token::Punct('}') => {
                        level -= 1;
                        if level == 0 {
                            break;
                        }
                        at_head = false;
                    }
                    Token::Punct(',') => at_head = level == 1,
                    Token::Ident(w) if at_head => {
                        heads.push((w.clone(), *line));
                        at_head = false;
                    }
                    _ => at_head = false,
                }
            }
            heads
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn edges(graph: &ModuleGraph) -> Vec<(String, String, usize)> {
        graph
            .iter()
            .flat_map(|(m, uses)| {
                uses.iter()
                    .map(move |(n, u)| (m.clone(), n.clone(), u.line))
            })
            .collect()
    }

    #[test]
    fn reads_paths_groups_and_super_but_not_comments_or_strings() {
        let dir = crate_with(&[
            ("lib.rs", "mod a; mod b; mod c; mod d;\npub use a::X;"),
            (
                "a.rs",
                "use crate::{b::Y, self as s,\n  c::{Z, W}};\n// crate::d\n/* crate::d /* nested */ crate::d */\nconst S: &str = \"crate::d\";\nconst R: &str = r#\"crate::d \"# ;\nconst Q: char = '\"';\nfn f<'l>(_: &'l str) -> crate::Result<()> { Ok(()) }",
            ),
            ("b.rs", "pub fn g() { assert!(super::c::ok()); }"),
            (
                "c.rs",
                "#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::d;\n}\nfn h() { super::d::x() }",
            ),
            ("d.rs", ""),
        ]);
        let graph = module_graph(dir.path());
        assert_eq!(
            edges(&graph),
            [
                ("a".into(), "b".into(), 1),
                ("a".into(), "c".into(), 2),
                ("b".into(), "c".into(), 1),
                ("c".into(), "d".into(), 4),
            ]
        );
        assert_eq!(graph["d"], BTreeMap::new());
        assert_eq!(find_cycle(&graph), None);
    }

    #[test]
    fn finds_a_cycle_through_several_modules() {
        let dir = crate_with(&[
            ("a.rs", "use crate::b;"),
            ("b.rs", "fn f() { crate::c::g() }"),
            ("c.rs", "\n\nuse crate::a::Thing;"),
            ("d.rs", "use crate::a;"),
        ]);
        assert_eq!(
            find_cycle(&module_graph(dir.path())).unwrap(),
            ["a", "b", "c", "a"]
        );
        let message = std::panic::catch_unwind(|| assert_no_module_cycle(dir.path()))
            .unwrap_err()
            .downcast::<String>()
            .unwrap();
        assert!(message.contains("a → b → c → a"), "{message}");
        assert!(message.contains("c → a  (c.rs:3)"), "{message}");
    }

    #[test]
    fn a_module_folder_counts_as_one_module_and_super_climbs_out_of_it() {
        let dir = crate_with(&[
            ("lib.rs", "mod a; mod b; mod c;"),
            ("a/mod.rs", "pub mod inner;\nuse super::b::X;"),
            (
                "a/inner.rs",
                "use super::Y;\nuse super::super::c::Z;\nmod t { use super::super::super::b; }",
            ),
            ("b.rs", ""),
            ("c.rs", "use crate::a::inner::W;"),
        ]);
        let graph = module_graph(dir.path());
        assert_eq!(
            edges(&graph),
            [
                ("a".into(), "b".into(), 2),
                ("a".into(), "c".into(), 2),
                ("c".into(), "a".into(), 1),
            ]
        );
        assert_eq!(
            graph["a"]["c"].file,
            format!("a{}inner.rs", std::path::MAIN_SEPARATOR)
        );
        assert_eq!(find_cycle(&graph).unwrap(), ["a", "c", "a"]);
    }
}
