//! Every error in a file, not only the first (`vipd --check`): syntax errors
//! all at once, then unknown or mistyped keys one by one (each offending
//! statement is blanked out and the file is read again, so offsets stay
//! true), then validation block by block. Also the human rendering: the
//! offending line with a caret, and "did you mean" for misspelt keys.

use toml::de::{DeTable, DeValue};

use super::{raw, Config, ConfigError, Cx};

/// How many unknown/mistyped keys are reported before giving up.
const MAX_STRUCTURAL: usize = 64;

/// Parse and validate `text`; on failure, every error found, in file order
/// sorted by line (the first one is the error [`super::parse`] reports).
pub fn parse_all(text: &str, file: &str) -> Result<Config, Vec<ConfigError>> {
    let cx = Cx { text, file };
    let (_, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(syntax
            .iter()
            .map(|e| cx.err_at(e.span().map(|s| s.start).unwrap_or(0), "", e.message().trim()))
            .collect());
    }
    let mut errors = Vec::new();
    let mut work = text.to_string();
    let mut blanked: Vec<String> = Vec::new();
    let raw = loop {
        match toml::from_str::<raw::File>(&work) {
            Ok(raw) => break Some(raw),
            Err(e) => {
                let msg = e.message().trim().to_string();
                let missing = missing_field(&msg);
                let suppressed = missing.is_some_and(|m| blanked.iter().any(|b| b == m));
                if !suppressed {
                    errors.push(structural_error(&cx, &work, &e, &msg));
                }
                let Some(span) = e.span() else { break None };
                match blank_statement(&work, span.start) {
                    Some((next, key)) if errors.len() < MAX_STRUCTURAL => {
                        work = next;
                        blanked.push(key);
                    }
                    _ => break None,
                }
            }
        }
    };
    let Some(raw) = raw else {
        return Err(sorted(errors));
    };
    // Validation runs on the original text: blanking kept every offset.
    match cx.build_all(raw) {
        Ok(cfg) if errors.is_empty() => Ok(cfg),
        Ok(_) => Err(sorted(errors)),
        Err(more) => {
            errors.extend(more);
            Err(sorted(errors))
        }
    }
}

/// In file order (serde visits keys in its own order).
fn sorted(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    errors.sort_by_key(|e| (e.line, e.col));
    errors
}

/// A serde error as a [`ConfigError`], naming the key for unknown fields and
/// suggesting the closest allowed name.
fn structural_error(cx: &Cx<'_>, work: &str, e: &toml::de::Error, msg: &str) -> ConfigError {
    let at = e.span().map(|s| s.start).unwrap_or(0);
    let (_, key) = blank_statement(work, at).unwrap_or_default();
    let message = match did_you_mean(msg) {
        Some(hint) => {
            let head = msg.split_once(", expected").map(|(h, _)| h).unwrap_or(msg);
            format!("{head}; did you mean `{hint}`?")
        }
        None => msg.to_string(),
    };
    cx.err_at(at, &key, message)
}

/// `missing field `x`` → `x`.
fn missing_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `")?.split('`').next()
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown
/// variant"), the allowed name closest to `x`, if it is close enough.
pub fn did_you_mean(msg: &str) -> Option<String> {
    let rest = msg
        .strip_prefix("unknown field `")
        .or_else(|| msg.strip_prefix("unknown variant `"))?;
    let (got, rest) = rest.split_once('`')?;
    let allowed = rest.split_once("expected")?.1;
    allowed
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|cand| (strsim::jaro_winkler(got, cand), cand))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

/// Replace the `key = value` statement that contains byte `at` with spaces
/// (newlines kept, so every other offset, line and column stays the same).
/// Returns the new text and the blanked key, or `None` when `at` is not in
/// a plain statement (a table header, a missing field).
fn blank_statement(text: &str, at: usize) -> Option<(String, String)> {
    let (doc, _) = DeTable::parse_recoverable(text);
    let (range, key) = find_statement(doc.get_ref(), at)?;
    let mut bytes = text.as_bytes().to_vec();
    for b in bytes.get_mut(range)? {
        if *b != b'\n' {
            *b = b' ';
        }
    }
    Some((String::from_utf8(bytes).ok()?, key))
}

/// The innermost entry whose key or value contains `at`, as the byte range
/// from its key to the end of its value, and its dotted key path. Entries whose value is a table
/// defined elsewhere (a `[header]`) are descended into, never blanked.
fn find_statement(table: &DeTable<'_>, at: usize) -> Option<(std::ops::Range<usize>, String)> {
    for (k, v) in table.iter() {
        let (ks, vs) = (k.span(), v.span());
        let inline = vs.start >= ks.end && vs.end > vs.start;
        if let DeValue::Table(inner) = v.get_ref() {
            if let Some((r, path)) = find_statement(inner, at) {
                return Some((r, format!("{}.{path}", k.get_ref())));
            }
        }
        if let DeValue::Array(items) = v.get_ref() {
            for item in items.iter() {
                if let DeValue::Table(inner) = item.get_ref() {
                    if item.span().contains(&at) {
                        if let Some((r, path)) = find_statement(inner, at) {
                            return Some((r, format!("{}.{path}", k.get_ref())));
                        }
                    }
                }
            }
        }
        let is_header_table = matches!(v.get_ref(), DeValue::Table(_)) && !inline;
        if !is_header_table && (ks.contains(&at) || (inline && vs.contains(&at))) {
            return Some((ks.start..vs.end, k.get_ref().to_string()));
        }
    }
    None
}

/// Render errors for a human: the message, the place, the line and a caret
/// under the offending token; then a count.
pub fn render(errors: &[ConfigError], text: &str) -> String {
    let mut out = String::new();
    for e in errors {
        if e.key.is_empty() {
            out.push_str(&format!("error: {}\n", e.message));
        } else {
            out.push_str(&format!("error: {}: {}\n", e.key, e.message));
        }
        out.push_str(&format!("  --> {}:{}:{}\n", e.file, e.line, e.col));
        if let Some(line) = text.lines().nth(e.line.saturating_sub(1)).filter(|_| e.line > 0) {
            let num = e.line.to_string();
            let pad = " ".repeat(num.len());
            let col = e.col.max(1);
            let token = token_len(line, col - 1);
            let shown: String = line.chars().map(|c| if c == '\t' { ' ' } else { c }).collect();
            let lead: String = line.chars().take(col - 1).map(|_| ' ').collect();
            let caret = "^".repeat(token);
            out.push_str(&format!(" {pad} |\n {num} | {shown}\n {pad} | {lead}{caret}\n"));
        }
        out.push('\n');
    }
    let n = errors.len();
    out.push_str(&format!("{n} error{}\n", if n == 1 { "" } else { "s" }));
    out
}

/// Width in characters of the token starting at character `start` of `line`:
/// a quoted string, a bracketed value, or a bare word; at least 1.
fn token_len(line: &str, start: usize) -> usize {
    let rest: Vec<char> = line.chars().skip(start).collect();
    let n = match rest.first() {
        Some('"') => rest.iter().skip(1).position(|&c| c == '"').map(|p| p + 2),
        Some('[') | Some('{') => {
            let close = if rest[0] == '[' { ']' } else { '}' };
            rest.iter().rposition(|&c| c == close).map(|p| p + 1)
        }
        _ => rest
            .iter()
            .position(|c| c.is_whitespace() || "=,]}".contains(*c))
            .or(Some(rest.len())),
    };
    n.unwrap_or(rest.len()).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_key() {
        let m = "unknown field `prioirty`, expected one of `interface`, `priority`, `preempt`";
        assert_eq!(did_you_mean(m).as_deref(), Some("priority"));
        let m = "unknown field `zzzz`, expected one of `interface`, `priority`";
        assert_eq!(did_you_mean(m), None);
    }

    #[test]
    fn blanking_keeps_offsets() {
        let t = "[a]\nx = 1\ny = [1,\n 2]\nz = 3\n";
        let at = t.find("y =").unwrap();
        let (b, key) = blank_statement(t, at).unwrap();
        assert_eq!(key, "a.y");
        assert_eq!(b.len(), t.len());
        assert_eq!(b.lines().count(), t.lines().count());
        assert!(b.contains("z = 3") && !b.contains('2'));
    }

    #[test]
    fn caret_under_the_token() {
        assert_eq!(token_len("prioirty = 150", 0), 8);
        assert_eq!(token_len("x = \"a b\"", 4), 5);
        assert_eq!(token_len("x = [1, 2]", 4), 6);
    }
}
