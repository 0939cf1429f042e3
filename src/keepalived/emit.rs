//! The TOML the importer writes: tables of keys, lists and comments, kept in
//! the order of the keepalived file so each comment sits where its
//! directive was.

use super::lexer::Loc;

/// A rendered TOML value (`"x"`, `5`, `true`, `{ a = 1 }`).
pub type Val = String;

/// A TOML string literal.
pub fn s(v: &str) -> Val {
    toml::Value::String(v.to_string()).to_string()
}

/// A TOML key: bare if it can be, else quoted.
pub fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_string()
    } else {
        s(k)
    }
}

/// An inline table from (key, value) pairs.
pub fn inline(pairs: &[(&str, Val)]) -> Val {
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{} = {v}", key(k))).collect();
    format!("{{ {} }}", inner.join(", "))
}

/// A one-line array.
pub fn array(items: &[Val]) -> Val {
    format!("[{}]", items.join(", "))
}

/// A number of seconds as keepalived writes it ("1", "0.5"): a TOML number.
pub fn secs(v: f64) -> Val {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Dotted header without brackets; empty = no header (a comment block).
    pub header: String,
    /// The keepalived block it came from.
    pub src: Option<Loc>,
    /// Comment lines above the header.
    pub lead: Vec<String>,
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
pub enum Entry {
    /// `key = value  # comment`
    Kv {
        key: String,
        val: Val,
        comment: Option<String>,
    },
    /// A comment line.
    Comment(String),
    /// A multi-line array: each element with its comment, or a comment line.
    List { key: String, items: Vec<Item> },
}

#[derive(Clone, Debug)]
pub enum Item {
    Val(Val, Option<String>),
    Comment(String),
}

impl Table {
    pub fn new(header: impl Into<String>) -> Table {
        Table {
            header: header.into(),
            ..Table::default()
        }
    }
    /// Set the keepalived block it comes from.
    pub fn at(mut self, loc: &Loc) -> Table {
        self.src = Some(loc.clone());
        self
    }
    /// Replace entry `i` by a comment: vipd refuses it.
    pub fn demote_entry(&mut self, i: usize, why: &str) -> String {
        let (text, extra) = entry_text(&self.entries[i]);
        let msg = format!("{text}: vipd refuses it: {why}");
        let mut repl = vec![Entry::Comment(format!("not converted: {msg}"))];
        repl.extend(extra.into_iter().map(Entry::Comment));
        self.entries.splice(i..=i, repl);
        msg
    }
    /// Turn the whole table into comments: vipd refuses it.
    pub fn demote(&mut self, why: &str) -> String {
        let msg = format!("[{}] as a whole: vipd refuses it: {why}", self.header);
        let mut out = vec![Entry::Comment(format!("not converted: {msg}"))];
        for e in std::mem::take(&mut self.entries) {
            match e {
                Entry::Comment(c) => out.push(Entry::Comment(c)),
                e => {
                    let (text, extra) = entry_text(&e);
                    out.push(Entry::Comment(format!("  {text}")));
                    out.extend(extra.into_iter().map(Entry::Comment));
                }
            }
        }
        self.header.clear();
        self.entries = out;
        msg
    }
    pub fn kv(&mut self, k: &str, v: Val) {
        self.entries.push(Entry::Kv {
            key: k.to_string(),
            val: v,
            comment: None,
        });
    }
    pub fn kv_c(&mut self, k: &str, v: Val, c: impl Into<String>) {
        self.entries.push(Entry::Kv {
            key: k.to_string(),
            val: v,
            comment: Some(c.into()),
        });
    }
    pub fn comment(&mut self, c: impl Into<String>) {
        self.entries.push(Entry::Comment(c.into()));
    }
    pub fn has(&self, k: &str) -> bool {
        self.entries.iter().any(|e| match e {
            Entry::Kv { key, .. } | Entry::List { key, .. } => key == k,
            Entry::Comment(_) => false,
        })
    }
    /// Append to list `k` (created at this point if new).
    pub fn push_item(&mut self, k: &str, item: Item) {
        for e in self.entries.iter_mut() {
            if let Entry::List { key, items } = e {
                if key == k {
                    items.push(item);
                    return;
                }
            }
        }
        self.entries.push(Entry::List {
            key: k.to_string(),
            items: vec![item],
        });
    }
}

/// Comment text TOML allows: control characters (but tab) become `?`.
fn clean(l: &str) -> String {
    l.chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}

/// An entry on one line, and the comments that went with it.
fn entry_text(e: &Entry) -> (String, Vec<String>) {
    match e {
        Entry::Kv { key: k, val, comment } => (format!("{} = {val}", key(k)), comment.iter().cloned().collect()),
        Entry::Comment(c) => (c.clone(), Vec::new()),
        Entry::List { key: k, items } => {
            let mut vals = Vec::new();
            let mut extra = Vec::new();
            for i in items {
                match i {
                    Item::Val(v, c) => {
                        vals.push(v.clone());
                        extra.extend(c.iter().cloned());
                    }
                    Item::Comment(c) => extra.push(c.clone()),
                }
            }
            (format!("{} = [{}]", key(k), vals.join(", ")), extra)
        }
    }
}

fn comment_lines(out: &mut String, indent: &str, c: &str) {
    for l in c.split('\n') {
        out.push_str(indent);
        out.push_str("# ");
        out.push_str(&clean(l));
        out.push('\n');
    }
}

/// Where a table or one of its entries is in the rendered text (1-based lines).
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub table: usize,
    /// `None`: the header line.
    pub entry: Option<usize>,
    pub first: usize,
    pub last: usize,
}

/// The whole file.
pub fn render(head: &[String], tables: &[Table]) -> String {
    render_mapped(head, tables).0
}

/// The whole file and where each table's header and entries are.
pub fn render_mapped(head: &[String], tables: &[Table]) -> (String, Vec<Span>) {
    let mut spans = Vec::new();
    let lines = |o: &String| o.matches('\n').count();
    let mut o = String::new();
    for h in head {
        comment_lines(&mut o, "", h);
    }
    for (ti, t) in tables.iter().enumerate() {
        o.push('\n');
        for l in &t.lead {
            comment_lines(&mut o, "", l);
        }
        if !t.header.is_empty() {
            o.push_str(&format!("[{}]\n", t.header));
            let n = lines(&o);
            spans.push(Span {
                table: ti,
                entry: None,
                first: n,
                last: n,
            });
        }
        for (ei, e) in t.entries.iter().enumerate() {
            let first = lines(&o) + 1;
            match e {
                Entry::Kv { key: k, val, comment } => {
                    o.push_str(&format!("{} = {val}", key(k)));
                    if let Some(c) = comment {
                        let mut first = c.split('\n');
                        o.push_str(&format!("  # {}", clean(first.next().unwrap_or(""))));
                        o.push('\n');
                        for l in first {
                            comment_lines(&mut o, "", l);
                        }
                    } else {
                        o.push('\n');
                    }
                }
                Entry::Comment(c) => comment_lines(&mut o, "", c),
                Entry::List { key: k, items } => {
                    if items.iter().all(|i| matches!(i, Item::Comment(_))) {
                        // Nothing converted: keep only the comments.
                        for i in items {
                            if let Item::Comment(c) = i {
                                comment_lines(&mut o, "", c);
                            }
                        }
                        continue;
                    }
                    o.push_str(&format!("{} = [\n", key(k)));
                    for i in items {
                        match i {
                            Item::Val(v, None) => o.push_str(&format!("  {v},\n")),
                            Item::Val(v, Some(c)) => o.push_str(&format!("  {v},  # {}\n", clean(c))),
                            Item::Comment(c) => comment_lines(&mut o, "  ", c),
                        }
                    }
                    o.push_str("]\n");
                }
            }
            spans.push(Span {
                table: ti,
                entry: Some(ei),
                first,
                last: lines(&o),
            });
        }
    }
    (o, spans)
}
