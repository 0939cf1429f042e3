//! keepalived's block structure: a keyword line, optionally followed by a
//! `{ ... }` block of more lines. Built from the reader's [`Line`]s.

use super::lexer::{Line, Loc, ParseError, Tok};

/// One statement: its words and, if it opened one, its block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub loc: Loc,
    pub words: Vec<String>,
    pub block: Option<Vec<Node>>,
}

impl Node {
    /// The keyword (first word).
    pub fn key(&self) -> &str {
        &self.words[0]
    }
    /// Word `i` (0 = the keyword), if present.
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(String::as_str)
    }
    /// The block's statements (none if it has no block).
    pub fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }
    /// The statement on one line, its block flattened: for comments.
    pub fn summary(&self) -> String {
        let mut s = self
            .words
            .iter()
            .map(|w| quote_if_needed(w))
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(b) = &self.block {
            s.push_str(" {");
            for c in b {
                s.push(' ');
                s.push_str(&c.summary());
            }
            s.push_str(" }");
        }
        s
    }
}

fn quote_if_needed(w: &str) -> String {
    if w.is_empty() || w.contains(char::is_whitespace) || w.contains(['{', '}', '#', '!']) {
        format!("\"{w}\"")
    } else {
        w.to_string()
    }
}

/// Build the statement tree; braces must balance.
pub fn tree(lines: &[Line]) -> Result<Vec<Node>, ParseError> {
    let mut stack: Vec<(Node, Vec<Node>)> = Vec::new();
    let mut top: Vec<Node> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        match &l.tok {
            Tok::Words(w) => {
                let node = Node {
                    loc: l.loc.clone(),
                    words: w.clone(),
                    block: None,
                };
                if matches!(lines.get(i + 1).map(|n| &n.tok), Some(Tok::Open)) {
                    stack.push((node, Vec::new()));
                    i += 2;
                    continue;
                }
                match stack.last_mut() {
                    Some((_, kids)) => kids.push(node),
                    None => top.push(node),
                }
            }
            Tok::Open => {
                return Err(ParseError {
                    loc: l.loc.clone(),
                    msg: "'{' without a keyword before it".into(),
                })
            }
            Tok::Close => {
                let Some((mut node, kids)) = stack.pop() else {
                    return Err(ParseError {
                        loc: l.loc.clone(),
                        msg: "extra '}'".into(),
                    });
                };
                node.block = Some(kids);
                match stack.last_mut() {
                    Some((_, k)) => k.push(node),
                    None => top.push(node),
                }
            }
        }
        i += 1;
    }
    if let Some((node, _)) = stack.last() {
        return Err(ParseError {
            loc: node.loc.clone(),
            msg: format!("block '{}' is not closed: missing '}}'", node.key()),
        });
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::super::lexer::read_text;
    use super::*;
    use std::path::Path;

    fn parse(t: &str) -> Result<Vec<Node>, ParseError> {
        let (l, _) = read_text(t, "t.conf", Path::new("/"), "h")?;
        tree(&l)
    }

    #[test]
    fn nested_blocks() {
        let n = parse("a 1 {\n b {\n  c\n }\n d 2\n}\ne\n").unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].summary(), "a 1 { b { c } d 2 }");
        assert_eq!(n[0].children()[1].loc.line, 5);
        assert_eq!(n[1].summary(), "e");
    }

    #[test]
    fn unbalanced_braces_name_the_line() {
        assert_eq!(
            parse("a {\n b\n").unwrap_err().to_string(),
            "t.conf:1: block 'a' is not closed: missing '}'"
        );
        assert_eq!(parse("a\n}\n").unwrap_err().to_string(), "t.conf:2: extra '}'");
        assert_eq!(
            parse("{\n}\n").unwrap_err().to_string(),
            "t.conf:1: '{' without a keyword before it"
        );
    }
}
