//! `vipctl import-keepalived`: read a keepalived.conf as keepalived reads it
//! (`lexer`, `parse`) and write vipd's TOML (`convert`, `emit`). Pure: no
//! network, no clock; it reads only the file and what it includes.
#![forbid(unsafe_code)]

pub mod cli;
mod convert;
mod emit;
mod glob;
mod lexer;
mod parse;

use std::path::Path;

pub use convert::{vipd_has, Finding, Kind};
pub use lexer::{Loc, ParseError};

/// The result of an import.
pub struct Import {
    /// vipd's configuration, with comments.
    pub toml: String,
    /// What was not converted (and notes on what was converted differently), in file order.
    pub findings: Vec<Finding>,
}

impl Import {
    /// True if something could not be carried over.
    pub fn incomplete(&self) -> bool {
        self.findings.iter().any(|f| f.kind == Kind::NotConverted)
    }
}

/// keepalived's default config id: the host name up to the first dot.
pub fn default_config_id() -> String {
    let h = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    h.split('.').next().unwrap_or("").to_string()
}

/// Import the keepalived configuration at `path`; `config_id` selects the
/// `@id` conditional lines (keepalived's `-i`).
pub fn import_file(path: &Path, config_id: &str) -> Result<Import, ParseError> {
    let (lines, warnings) = lexer::read_file(path, config_id)?;
    finish(&path.display().to_string(), &lines, warnings)
}

/// Import configuration text; `name` names it in messages, relative
/// includes resolve in `dir`.
pub fn import_text(text: &str, name: &str, dir: &Path, config_id: &str) -> Result<Import, ParseError> {
    let (lines, warnings) = lexer::read_text(text, name, dir, config_id)?;
    finish(name, &lines, warnings)
}

fn finish(name: &str, lines: &[lexer::Line], warnings: Vec<lexer::Warning>) -> Result<Import, ParseError> {
    let nodes = parse::tree(lines)?;
    let out = convert::convert(&nodes);
    let mut head = vec![
        format!("vipd configuration converted from {name} by vipctl import-keepalived."),
        "Check it with: vipd --check -c FILE. \"not converted\" marks what vipd cannot do as keepalived did."
            .to_string(),
    ];
    let mut findings = Vec::new();
    for w in warnings {
        head.push(format!("not converted: {}: {}", w.loc, w.msg));
        findings.push(Finding {
            loc: w.loc,
            kind: Kind::NotConverted,
            msg: w.msg,
        });
    }
    findings.extend(out.findings);
    let toml = vipd_accepts(&head, out.tables, name, &mut findings);
    findings.sort_by(|a, b| (a.loc.file.as_ref(), a.loc.line).cmp(&(b.loc.file.as_ref(), b.loc.line)));
    Ok(Import { toml, findings })
}

/// Most entries the last check may comment out before it gives up.
const MAX_REFUSALS: usize = 256;

/// The last check: vipd's own config parser reads the output. A key it
/// refuses is commented out with vipd's reason (a table, if the error is on
/// its header or a required key is missing), until it accepts the file.
fn vipd_accepts(head: &[String], mut tables: Vec<emit::Table>, name: &str, findings: &mut Vec<Finding>) -> String {
    let top = Loc {
        file: std::sync::Arc::from(name),
        line: 0,
    };
    for _ in 0..MAX_REFUSALS {
        let (text, spans) = emit::render_mapped(head, &tables);
        let Err(e) = crate::config::parse(&text, "converted") else {
            return text;
        };
        let why = if e.key.is_empty() {
            e.message.clone()
        } else {
            format!("{}: {}", e.key, e.message)
        };
        let Some(span) = spans.iter().find(|s| s.first <= e.line && e.line <= s.last) else {
            // Not on anything we wrote (cannot happen with valid TOML): say so.
            findings.push(Finding {
                loc: top,
                kind: Kind::NotConverted,
                msg: format!("vipd refuses the converted file: {why}"),
            });
            return text;
        };
        let t = &mut tables[span.table];
        let msg = match span.entry {
            Some(i) => t.demote_entry(i, &why),
            None => t.demote(&why),
        };
        findings.push(Finding {
            loc: t.src.clone().unwrap_or_else(|| top.clone()),
            kind: Kind::NotConverted,
            msg,
        });
    }
    let text = emit::render(head, &tables);
    findings.push(Finding {
        loc: top,
        kind: Kind::NotConverted,
        msg: format!("vipd still refuses the converted file after {MAX_REFUSALS} keys were commented out"),
    });
    text
}
