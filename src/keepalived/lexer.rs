//! keepalived's line reader, as `lib/parser.c` reads a file: comments (`#`,
//! `!`), `@id`/`@^id` conditional lines, `$NAME=value` definitions and their
//! expansion, `~SEQ`, `include` with globs, and `{`/`}` split into lines of
//! their own. The output is a flat list of [`Line`]s with their file:line.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::glob;

/// Where a line came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A parse error: the input is not keepalived's grammar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub loc: Loc,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc, self.msg)
    }
}

impl std::error::Error for ParseError {}

/// One logical line after all of keepalived's preprocessing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    Open,
    Close,
    Words(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub loc: Loc,
    pub tok: Tok,
}

/// Something the reader could not carry out but keepalived would have
/// skipped with a log line (an include that matches nothing, `$_RANDOM`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub loc: Loc,
    pub msg: String,
}

/// A source of text lines for [`read_text`]: the file name, its directory
/// (for relative includes) and its contents.
struct Src {
    name: Arc<str>,
    dir: PathBuf,
    lines: Vec<String>,
    next: usize,
}

/// A line produced by expansion (multiline definition, `~SEQ`, brace
/// residue): processed like a file line but not decommented again.
struct Pending {
    loc: Loc,
    text: String,
    /// `~SEQ`: set this definition before processing the line.
    set: Option<(String, String)>,
}

struct Def {
    name: String,
    value: String,
    multiline: bool,
}

/// Bounds that keep a hostile file from looping forever.
const MAX_INCLUDE_DEPTH: usize = 32;
const MAX_EXPANSIONS_PER_LINE: usize = 256;
const MAX_SEQ_LINES: i64 = 100_000;
const MAX_LINES: usize = 1_000_000;

struct Reader<'a> {
    config_id: &'a str,
    stack: Vec<Src>,
    pending: VecDeque<Pending>,
    defs: Vec<Def>,
    /// The definition being continued with trailing `\`.
    multiline_def: Option<usize>,
    out: Vec<Line>,
    warnings: Vec<Warning>,
    produced: usize,
}

/// Read `path` and everything it includes.
pub fn read_file(path: &Path, config_id: &str) -> Result<(Vec<Line>, Vec<Warning>), ParseError> {
    let name: Arc<str> = Arc::from(path.display().to_string());
    let text = std::fs::read(path).map_err(|e| ParseError {
        loc: Loc {
            file: name.clone(),
            line: 0,
        },
        msg: format!("cannot read: {e}"),
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    read_text(&String::from_utf8_lossy(&text), &name, &dir, config_id)
}

/// Read `text` (named `name` in locations; relative includes resolve in `dir`).
pub fn read_text(text: &str, name: &str, dir: &Path, config_id: &str) -> Result<(Vec<Line>, Vec<Warning>), ParseError> {
    let mut r = Reader {
        config_id,
        stack: Vec::new(),
        pending: VecDeque::new(),
        defs: Vec::new(),
        multiline_def: None,
        out: Vec::new(),
        warnings: Vec::new(),
        produced: 0,
    };
    r.push_src(Arc::from(name), dir.to_path_buf(), text);
    r.run()?;
    Ok((r.out, r.warnings))
}

impl Reader<'_> {
    fn push_src(&mut self, name: Arc<str>, dir: PathBuf, text: &str) {
        self.stack.push(Src {
            name,
            dir,
            lines: text.lines().map(str::to_string).collect(),
            next: 0,
        });
    }

    fn err(loc: &Loc, msg: impl Into<String>) -> ParseError {
        ParseError {
            loc: loc.clone(),
            msg: msg.into(),
        }
    }

    /// The next raw line: generated ones first, then the innermost file.
    /// Returns the line, its location, and whether it came from a file.
    fn next_raw(&mut self) -> Result<Option<(Loc, String, bool)>, ParseError> {
        if let Some(p) = self.pending.pop_front() {
            if let Some((k, v)) = p.set {
                self.set_def(&k, &v, false);
            }
            return Ok(Some((p.loc, p.text, false)));
        }
        loop {
            let Some(src) = self.stack.last_mut() else {
                return Ok(None);
            };
            if src.next >= src.lines.len() {
                self.stack.pop();
                continue;
            }
            src.next += 1;
            let loc = Loc {
                file: src.name.clone(),
                line: src.next,
            };
            let raw = src.lines[src.next - 1].trim_end_matches('\r').to_string();
            return Ok(Some((loc, raw, true)));
        }
    }

    fn run(&mut self) -> Result<(), ParseError> {
        while let Some((loc, raw, from_file)) = self.next_raw()? {
            self.produced += 1;
            if self.produced > MAX_LINES {
                return Err(Self::err(
                    &loc,
                    "more than 1000000 lines after expansion (includes or definitions that repeat themselves?)",
                ));
            }
            let line = if from_file {
                decomment(&raw, &loc)?
            } else {
                raw.trim().to_string()
            };
            if let Some(i) = self.multiline_def {
                self.continue_def(i, &line);
                continue;
            }
            if line.is_empty() {
                continue;
            }
            self.logical(loc, line)?;
        }
        Ok(())
    }

    /// A line continuing a multiline definition (`$NAME=a \`).
    fn continue_def(&mut self, i: usize, line: &str) {
        if line.is_empty() {
            self.multiline_def = None;
            return;
        }
        let (text, more) = match line.strip_suffix('\\') {
            Some(t) => (t.trim_end(), true),
            None => (line, false),
        };
        let d = &mut self.defs[i];
        if !text.is_empty() {
            if !d.value.is_empty() {
                d.value.push('\n');
            }
            d.value.push_str(text);
        }
        if !more {
            self.multiline_def = None;
        }
    }

    /// One non-empty, decommented line: conditionals, definitions, `~SEQ`,
    /// expansion, `include`, then braces and words.
    fn logical(&mut self, loc: Loc, mut line: String) -> Result<(), ParseError> {
        let mut expansions = 0;
        loop {
            if line.starts_with('@') {
                match self.conditional(&line) {
                    Some(rest) => line = rest,
                    None => return Ok(()),
                }
            }
            if line.starts_with('$') && self.definition(&line) {
                return Ok(());
            }
            if let Some(spec) = line.strip_prefix("~SEQ") {
                return self.seq(&loc, spec);
            }
            if line.starts_with('~') {
                break;
            }
            if !line.contains('$') {
                break;
            }
            let (new, changed) = self.expand(&loc, &line, &mut expansions)?;
            line = new;
            if !changed || !(line.starts_with('@') || line.contains('$')) {
                break;
            }
            if expansions > MAX_EXPANSIONS_PER_LINE {
                return Err(Self::err(
                    &loc,
                    "definitions expand without end (a $NAME that refers to itself?)",
                ));
            }
        }
        let line = line.trim().to_string();
        if line.is_empty() {
            return Ok(());
        }
        if self.include(&loc, &line)? {
            return Ok(());
        }
        self.braces(loc, &line)
    }

    /// `@id rest` / `@^id rest`: the rest if the line applies to us.
    fn conditional(&self, line: &str) -> Option<String> {
        let (neg, body) = match line.strip_prefix("@^") {
            Some(b) => (true, b),
            None => (false, &line[1..]),
        };
        let end = body.find([' ', '\t'])?;
        let id = &body[..end];
        if (id == self.config_id) == neg {
            return None;
        }
        Some(body[end..].trim_start().to_string())
    }

    /// `$NAME=value` (or `$NAME = value`); true if it was one.
    fn definition(&mut self, line: &str) -> bool {
        let b = line.as_bytes();
        if b.len() < 2 || !(b[1].is_ascii_alphabetic() || b[1] == b'_') {
            return false;
        }
        let name_end = 1 + line[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(line.len() - 1);
        let rest = line[name_end..].trim_start_matches([' ', '\t']);
        let Some(value) = rest.strip_prefix('=') else {
            return false;
        };
        let name = line[1..name_end].to_string();
        let value = value.trim_start_matches([' ', '\t']);
        let (value, multiline) = match value.strip_suffix('\\') {
            Some(v) => (v.trim_end(), true),
            None => (value, false),
        };
        let i = self.set_def(&name, value, multiline);
        if multiline {
            self.multiline_def = Some(i);
        }
        true
    }

    fn set_def(&mut self, name: &str, value: &str, multiline: bool) -> usize {
        if let Some(i) = self.defs.iter().position(|d| d.name == name) {
            self.defs[i].value = value.to_string();
            self.defs[i].multiline = multiline;
            return i;
        }
        self.defs.push(Def {
            name: name.to_string(),
            value: value.to_string(),
            multiline,
        });
        self.defs.len() - 1
    }

    /// Replace `$NAME` and `${NAME}` with their values, rescanning the
    /// replacement as keepalived does. Unknown names stay as they are. A
    /// multiline definition at the end of a line continues on new lines.
    fn expand(&mut self, loc: &Loc, line: &str, count: &mut usize) -> Result<(String, bool), ParseError> {
        let mut s = line.to_string();
        let mut pos = 0;
        let mut changed = false;
        let mut tail: Vec<String> = Vec::new();
        while let Some(off) = s[pos..].find('$') {
            let at = pos + off;
            let Some((name, len)) = reference(&s[at + 1..]) else {
                pos = at + 1;
                continue;
            };
            let at_end = at + 1 + len == s.len();
            let value = if name == "_INSTANCE" && !self.defs.iter().any(|d| d.name == "_INSTANCE") {
                Some((self.config_id.to_string(), false))
            } else if name == "_PWD" && !self.defs.iter().any(|d| d.name == "_PWD") {
                let dir = self
                    .stack
                    .last()
                    .map(|s| s.dir.display().to_string())
                    .unwrap_or_default();
                Some((dir, false))
            } else {
                self.defs
                    .iter()
                    .find(|d| d.name == name && (at_end || !d.multiline))
                    .map(|d| (d.value.clone(), d.multiline))
            };
            let Some((value, multiline)) = value else {
                pos = at + 1;
                continue;
            };
            *count += 1;
            if *count > MAX_EXPANSIONS_PER_LINE {
                return Err(Self::err(
                    loc,
                    "definitions expand without end (a $NAME that refers to itself?)",
                ));
            }
            changed = true;
            let first = if multiline {
                let mut parts = value.split('\n');
                let first = parts.next().unwrap_or("").to_string();
                let mut rest: Vec<String> = parts.map(str::to_string).collect();
                rest.append(&mut tail);
                tail = rest;
                first
            } else {
                value
            };
            s.replace_range(at..at + 1 + len, &first);
            pos = at;
            if first.trim_start().starts_with('~') {
                break;
            }
        }
        for (i, t) in tail.into_iter().enumerate() {
            self.pending.insert(
                i,
                Pending {
                    loc: loc.clone(),
                    text: t,
                    set: None,
                },
            );
        }
        Ok((s, changed))
    }

    /// `~SEQ(VAR, [START,] [STEP,] END) text`: the text once per value,
    /// with `$VAR` set to it.
    fn seq(&mut self, loc: &Loc, spec: &str) -> Result<(), ParseError> {
        let bad = || Self::err(loc, format!("invalid ~SEQ specification '~SEQ{spec}'"));
        let (hex, spec) = match spec.strip_prefix('x') {
            Some(s) => (true, s),
            None => (false, spec),
        };
        let spec = spec.trim_start();
        let inner_end = spec.find(')').ok_or_else(bad)?;
        let inner = spec.strip_prefix('(').ok_or_else(bad)?;
        let inner = &inner[..inner_end - 1];
        let text = spec[inner_end + 1..].trim().to_string();
        let mut parts = inner.split(',').map(str::trim);
        let var = parts.next().filter(|v| !v.is_empty()).ok_or_else(bad)?.to_string();
        let mut nums = Vec::new();
        for p in parts {
            let mut scratch = 0;
            let (p, _) = self.expand(loc, p, &mut scratch)?;
            nums.push(parse_c_long(p.trim()).ok_or_else(bad)?);
        }
        let (start, step, end) = match nums[..] {
            [end] => (if end < 0 { -1 } else { 1 }, if end < 1 { -1 } else { 1 }, end),
            [start, end] => (start, if start <= end { 1 } else { -1 }, end),
            [start, step, end] => (start, step, end),
            _ => return Err(bad()),
        };
        if step == 0 || (start < end && step < 0) || (start > end && step > 0) || (hex && (start < 0 || end < 0)) {
            return Err(bad());
        }
        let (start, step, end) = (i128::from(start), i128::from(step), i128::from(end));
        let n = (end - start) / step + 1;
        if n > i128::from(MAX_SEQ_LINES) {
            return Err(Self::err(loc, format!("~SEQ of {n} lines: at most {MAX_SEQ_LINES}")));
        }
        let mut v = start;
        let mut gen = Vec::new();
        while (step > 0 && v <= end) || (step < 0 && v >= end) {
            let val = if hex { format!("{v:x}") } else { v.to_string() };
            gen.push(Pending {
                loc: loc.clone(),
                text: text.clone(),
                set: Some((var.clone(), val)),
            });
            v += step;
        }
        for (i, p) in gen.into_iter().enumerate() {
            self.pending.insert(i, p);
        }
        Ok(())
    }

    /// `include PATTERN`: every file the glob matches, relative to the
    /// including file's directory, in sorted order. True if it was one.
    fn include(&mut self, loc: &Loc, line: &str) -> Result<bool, ParseError> {
        if !line.contains("include") {
            return Ok(false);
        }
        let words = split_words(line, loc)?;
        if words.len() != 2 || words[0] != "include" {
            return Ok(false);
        }
        if self.stack.len() > MAX_INCLUDE_DEPTH {
            return Err(Self::err(
                loc,
                format!("includes nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)"),
            ));
        }
        let dir = self.stack.last().map(|s| s.dir.clone()).unwrap_or_default();
        let pattern = Path::new(&words[1]);
        let full = if pattern.is_absolute() {
            pattern.to_path_buf()
        } else {
            dir.join(pattern)
        };
        let files = glob::glob(&full.display().to_string());
        let mut opened = 0;
        // The stack reads its last entry first: push in reverse order.
        let mut texts = Vec::new();
        for f in files {
            if f.is_dir() {
                continue;
            }
            match std::fs::read(&f) {
                Ok(t) => texts.push((f, String::from_utf8_lossy(&t).into_owned())),
                Err(e) => self.warnings.push(Warning {
                    loc: loc.clone(),
                    msg: format!("include {}: cannot read {}: {e}", words[1], f.display()),
                }),
            }
        }
        for (f, text) in texts.into_iter().rev() {
            opened += 1;
            let name: Arc<str> = Arc::from(f.display().to_string());
            let d = f.parent().map(Path::to_path_buf).unwrap_or_default();
            self.push_src(name, d, &text);
        }
        if opened == 0 {
            self.warnings.push(Warning {
                loc: loc.clone(),
                msg: format!("include {}: no file matched {}", words[1], full.display()),
            });
        }
        Ok(true)
    }

    /// Split at the first `{` or `}` outside double quotes, as keepalived
    /// does: the brace is a line of its own, the rest is read next.
    fn braces(&mut self, loc: Loc, line: &str) -> Result<(), ParseError> {
        let mut in_q = false;
        let mut at = None;
        for (i, c) in line.char_indices() {
            match c {
                '"' => in_q = !in_q,
                '{' | '}' if !in_q => {
                    at = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let (head, brace, rest) = match at {
            None => (line, None, ""),
            Some(i) => (&line[..i], Some(&line[i..i + 1]), &line[i + 1..]),
        };
        let head = head.trim();
        if !head.is_empty() {
            let words = split_words(head, &loc)?;
            if !words.is_empty() {
                self.out.push(Line {
                    loc: loc.clone(),
                    tok: Tok::Words(words),
                });
            }
        }
        if let Some(b) = brace {
            self.out.push(Line {
                loc: loc.clone(),
                tok: if b == "{" { Tok::Open } else { Tok::Close },
            });
            let rest = rest.trim();
            if !rest.is_empty() {
                self.pending.push_front(Pending {
                    loc,
                    text: rest.to_string(),
                    set: None,
                });
            }
        }
        Ok(())
    }
}

/// `NAME` or `{NAME}` at the start of `s` (after a `$`), as keepalived's
/// `find_definition` accepts it: the name and the length consumed.
fn reference(s: &str) -> Option<(String, usize)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let first = body.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    let len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let name = body[..len].to_string();
    let next = body[len..].chars().next();
    if braced {
        (next == Some('}')).then(|| (name, len + 2))
    } else {
        matches!(next, None | Some(' ') | Some('\t') | Some(',') | Some(')')).then_some((name, len))
    }
}

/// strtol(…, 0): decimal, 0x hex or 0 octal, with a sign.
fn parse_c_long(s: &str) -> Option<i64> {
    let (neg, d) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = d.strip_prefix("0x").or_else(|| d.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if d.len() > 1 && d.starts_with('0') {
        i64::from_str_radix(&d[1..], 8).ok()?
    } else {
        d.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// keepalived's `decomment`: drop leading/trailing blanks and everything
/// from a `#` or `!` outside double quotes; `\#` and `\!` are literal.
fn decomment(raw: &str, loc: &Loc) -> Result<String, ParseError> {
    let mut out = String::with_capacity(raw.len());
    let mut quote = false;
    let mut chars = raw.trim_start_matches([' ', '\t']).chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quote = !quote;
                out.push(c);
            }
            '\\' => match chars.peek() {
                Some(&n @ ('#' | '!')) if !quote => {
                    out.push(n);
                    chars.next();
                }
                Some(&n) => {
                    out.push(c);
                    out.push(n);
                    chars.next();
                }
                None => out.push(c),
            },
            '#' | '!' if !quote => break,
            _ => out.push(c),
        }
    }
    if quote {
        return Err(ParseError {
            loc: loc.clone(),
            msg: "unterminated quote".into(),
        });
    }
    let t = out.trim_end_matches([' ', '\t']);
    Ok(t.to_string())
}

/// Words of a line: whitespace separates, `"…"` groups (quotes removed).
pub fn split_words(s: &str, loc: &Loc) -> Result<Vec<String>, ParseError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            // A quoted string is a word of its own (keepalived ends the
            // previous word at the quote).
            if in_word {
                words.push(std::mem::take(&mut cur));
                in_word = false;
            }
            let mut q = String::new();
            let mut closed = false;
            for c in chars.by_ref() {
                if c == '"' {
                    closed = true;
                    break;
                }
                q.push(c);
            }
            if !closed {
                return Err(ParseError {
                    loc: loc.clone(),
                    msg: "unterminated quote".into(),
                });
            }
            words.push(q);
        } else if c.is_whitespace() {
            if in_word {
                words.push(std::mem::take(&mut cur));
                in_word = false;
            }
        } else {
            cur.push(c);
            in_word = true;
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str, id: &str) -> Vec<String> {
        let (ls, _) = read_text(text, "t.conf", Path::new("/nonexistent"), id).unwrap();
        ls.iter()
            .map(|l| match &l.tok {
                Tok::Open => "{".to_string(),
                Tok::Close => "}".to_string(),
                Tok::Words(w) => w.join("|"),
            })
            .collect()
    }

    #[test]
    fn comments_braces_and_quotes() {
        let t = "! head\nvrrp_instance VI_1 { # c\n  notify \"/bin/x a # b\" ! c\n  auth_pass a\\#b\n}\n";
        assert_eq!(
            lines(t, "h"),
            ["vrrp_instance|VI_1", "{", "notify|/bin/x a # b", "auth_pass|a#b", "}"]
        );
        assert_eq!(lines("a { b c } d", "h"), ["a", "{", "b|c", "}", "d"]);
        assert_eq!(lines("x \"{ y }\" {", "h"), ["x|{ y }", "{"]);
    }

    #[test]
    fn conditionals_follow_the_config_id() {
        let t = "@high priority 170\n@low priority 85\n@^high weight 1\nrouter_id r\n@high\n";
        assert_eq!(lines(t, "high"), ["priority|170", "router_id|r"]);
        assert_eq!(lines(t, "low"), ["priority|85", "weight|1", "router_id|r"]);
    }

    #[test]
    fn definitions_expand_plain_braced_and_multiline() {
        let t =
            "$IF=eth0\n$PRIO = 150\n$BLOCK=a 1 \\\n  b 2\ninterface $IF\npriority ${PRIO}0\nx $IFy $UNKNOWN\n$BLOCK\n";
        assert_eq!(
            lines(t, "h"),
            ["interface|eth0", "priority|1500", "x|$IFy|$UNKNOWN", "a|1", "b|2"]
        );
        // A definition may hold a conditional; @ is rechecked after expansion.
        assert_eq!(lines("$C=@h\n$C prio 1\n$C", "h"), ["prio|1"]);
        let e = read_text("$A=$A\nx $A\n", "t.conf", Path::new("/"), "h").unwrap_err();
        assert_eq!(e.loc.line, 2);
        assert_eq!(lines("y $_INSTANCE\n", "node7"), ["y|node7"]);
    }

    #[test]
    fn seq_repeats_a_line() {
        assert_eq!(
            lines("~SEQ(i, 1, 3) ip 10.0.0.$i\n", "h"),
            ["ip|10.0.0.1", "ip|10.0.0.2", "ip|10.0.0.3"]
        );
        assert_eq!(lines("~SEQx(i, 9, 2, 13) n $i\n", "h"), ["n|9", "n|b", "n|d"]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = read_text("a\nb \"open\n", "k.conf", Path::new("/"), "h").unwrap_err();
        assert_eq!(e.to_string(), "k.conf:2: unterminated quote");
    }
}
