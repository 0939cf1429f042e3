//! glob(3) as keepalived calls it for `include` (GLOB_BRACE): `*`, `?`,
//! `[...]` per path component, `{a,b}` alternatives, sorted matches, and
//! no match of a leading `.` by a wildcard.

use std::path::PathBuf;

/// Most alternatives one pattern may expand to.
const MAX_ALTERNATIVES: usize = 1024;

/// The existing paths `pattern` matches, sorted within each `{}` alternative.
pub fn glob(pattern: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in braces(pattern) {
        let mut found = walk(&p);
        found.sort();
        out.extend(found);
    }
    out
}

/// Expand the first `{a,b,...}` (recursively), as GLOB_BRACE does.
fn braces(p: &str) -> Vec<String> {
    let Some(open) = p.find('{') else {
        return vec![p.to_string()];
    };
    let mut depth = 0;
    let mut close = None;
    let mut commas = Vec::new();
    for (i, c) in p[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            ',' if depth == 1 => commas.push(open + i),
            _ => {}
        }
    }
    let Some(close) = close else {
        return vec![p.to_string()];
    };
    let mut cuts = vec![open];
    cuts.extend(commas);
    cuts.push(close);
    let mut out = Vec::new();
    for w in cuts.windows(2) {
        if out.len() >= MAX_ALTERNATIVES {
            break;
        }
        let alt = format!("{}{}{}", &p[..open], &p[w[0] + 1..w[1]], &p[close + 1..]);
        for e in braces(&alt) {
            if out.len() < MAX_ALTERNATIVES {
                out.push(e);
            }
        }
    }
    out
}

fn has_magic(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn walk(pattern: &str) -> Vec<PathBuf> {
    let absolute = pattern.starts_with('/');
    let mut cur: Vec<PathBuf> = vec![if absolute { PathBuf::from("/") } else { PathBuf::new() }];
    let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    for comp in comps {
        let mut next = Vec::new();
        for base in &cur {
            if !has_magic(comp) {
                next.push(base.join(comp));
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                base.clone()
            };
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && !comp.starts_with('.') {
                    continue;
                }
                if fnmatch(comp.as_bytes(), name.as_bytes()) {
                    next.push(base.join(&name));
                }
            }
        }
        cur = next;
    }
    cur.into_iter().filter(|p| p.exists()).collect()
}

/// Match one path component against `*`, `?` and `[...]` (with `!`/`^` and ranges).
fn fnmatch(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                b'[' => {
                    if let Some((ok, len)) = class(&p[pi..], s[si]) {
                        if ok {
                            pi += len;
                            si += 1;
                            continue;
                        }
                    } else if s[si] == b'[' {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
                c => {
                    if c == s[si] {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A `[...]` class at the start of `p`: whether `c` is in it and its length.
fn class(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let neg = matches!(p.get(i), Some(b'!') | Some(b'^'));
    if neg {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == b']' && !first {
            return Some((hit != neg, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            if p[i] <= c && c <= p[i + 2] {
                hit = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                hit = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_patterns() {
        assert!(fnmatch(b"*.conf", b"a.conf"));
        assert!(!fnmatch(b"*.conf", b"a.conf.bak"));
        assert!(fnmatch(b"vi_?.c*", b"vi_1.conf"));
        assert!(fnmatch(b"[a-c]x", b"bx"));
        assert!(!fnmatch(b"[!a-c]x", b"bx"));
        assert!(fnmatch(b"*", b""));
    }

    #[test]
    fn brace_alternatives() {
        assert_eq!(braces("/a/{x,y{1,2}}.conf"), ["/a/x.conf", "/a/y1.conf", "/a/y2.conf"]);
        assert_eq!(braces("no{brace"), ["no{brace"]);
    }
}
