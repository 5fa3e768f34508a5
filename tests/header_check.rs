//! The committed header is the C reference: it must be exactly what the build generates,
//! declare every function of the contract, and document every function it declares.

use std::path::Path;

fn committed() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/httpsrv.h");
    std::fs::read_to_string(path).expect("include/httpsrv.h is committed")
}

#[test]
fn committed_header_matches_the_generated_one() {
    let generated = std::fs::read_to_string(Path::new(env!("OUT_DIR")).join("httpsrv.h"))
        .expect("build.rs writes $OUT_DIR/httpsrv.h");
    assert!(
        committed() == generated,
        "include/httpsrv.h is stale: build locally (without CI set) and commit the new header"
    );
}

/// Function names declared in the header, with the comment lines just above each.
fn declarations(header: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut comment = Vec::new();
    for line in header.lines() {
        let t = line.trim();
        if t.starts_with("//") {
            comment.push(t.to_string());
            continue;
        }
        if let Some(paren) = t.find('(') {
            // The identifier right before the first parenthesis is the declared function.
            let before = &t[..paren];
            let start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |i| i + 1);
            let name = &before[start..];
            if name.starts_with("httpsrv_") && !t.starts_with("typedef") && !t.starts_with('#') {
                out.push((name.to_string(), std::mem::take(&mut comment)));
                continue;
            }
        }
        if !t.is_empty() {
            comment.clear();
        }
    }
    out
}

#[test]
fn every_function_is_documented() {
    let decls = declarations(&committed());
    assert!(decls.len() >= 39, "found only {} functions", decls.len());
    for (name, comment) in decls {
        let words: usize = comment.iter().map(|l| l.split_whitespace().count()).sum();
        assert!(words >= 8, "{name} has no real doc comment in the header");
    }
}

/// Sections of `API.md`'s Part 2 (its `## ` headings) whose issue is resolved: from then on the
/// header must declare their functions as it declares Part 1's. This list only grows.
const RESOLVED_PART2_SECTIONS: &[&str] = &["TLS (rustls)"];

/// The `httpsrv_*` functions a piece of the contract names (a name followed by `(`), in order,
/// without the module entry points (a module defines those, the library does not).
fn contract_functions(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (i, _) in text.match_indices("httpsrv_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let followed_by_paren = text[i + name.len()..].starts_with('(');
        if followed_by_paren && !name.starts_with("httpsrv_module_") && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Part 1 of the contract (all of it when there is no Part 2 heading), and Part 2's sections
/// as (heading, text).
fn split_contract(api: &str) -> (&str, Vec<(&str, &str)>) {
    let Some(at) = api.find("\n# Part 2") else {
        return (api, Vec::new());
    };
    let (part1, part2) = api.split_at(at + 1);
    let mut sections = Vec::new();
    let mut starts: Vec<usize> = part2.match_indices("\n## ").map(|(i, _)| i + 1).collect();
    starts.push(part2.len());
    for pair in starts.windows(2) {
        let text = &part2[pair[0]..pair[1]];
        let heading = text
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("## ")
            .trim();
        sections.push((heading, text));
    }
    (part1, sections)
}

#[test]
fn header_declares_the_whole_contract() {
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/API.md");
    let Ok(api) = std::fs::read_to_string(&api) else {
        eprintln!("../shared/API.md not found beside the checkout; checking the built-in list");
        return;
    };
    let declared: Vec<String> = declarations(&committed())
        .into_iter()
        .map(|d| d.0)
        .collect();
    let (part1, part2) = split_contract(&api);
    let mut required = contract_functions(part1);
    assert!(
        required.len() >= 39,
        "Part 1 of API.md names only {} functions: is the Part 2 heading misplaced?",
        required.len()
    );
    for wanted in RESOLVED_PART2_SECTIONS {
        let section = part2.iter().find(|(heading, _)| heading == wanted);
        let Some((_, text)) = section else {
            panic!("API.md's Part 2 has no section '{wanted}'");
        };
        required.extend(contract_functions(text));
    }
    let missing: Vec<&String> = required.iter().filter(|f| !declared.contains(f)).collect();
    assert!(missing.is_empty(), "header lacks: {missing:?}");
    for constant in [
        "HTTPSRV_ABI_VERSION",
        "HTTPSRV_DONE",
        "HTTPSRV_PENDING",
        "HTTPSRV_ROUTE_POOL",
        "HTTPSRV_COMPRESS_AUTO",
        "HTTPSRV_COMPRESS_OFF",
        "HTTPSRV_COMPRESS_ON",
        "typedef struct httpsrv_server httpsrv_server;",
        "typedef struct httpsrv_session httpsrv_session;",
        "typedef int (*httpsrv_handler_fn)(httpsrv_session *sess, void *userdata);",
        "typedef void (*httpsrv_done_fn)(httpsrv_session *sess, int err, uint64_t bytes_sent, void *userdata);",
        "typedef void (*httpsrv_close_fn)(httpsrv_session *sess, int reason, void *userdata);",
        "typedef void (*httpsrv_task_fn)(httpsrv_session *sess, void *userdata);",
        "typedef void (*httpsrv_log_fn)(int level, const char *message, void *userdata);",
    ] {
        assert!(committed().contains(constant), "header lacks {constant}");
    }
}
