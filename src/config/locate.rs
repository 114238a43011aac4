//! Where in a YAML text a config error's field is: `providers.openai.base_url`,
//! `keys[2].limits.rpm` → a line number, so the console (and `-t` users reading its
//! answer) can point at the line. serde_yaml keeps no positions for values, so this
//! walks the text's block structure; a field written in flow style (`{ rpm: 5 }`) is
//! found as the line of its nearest block-style parent.

/// One significant line: its number (1-based), the indent of each leading `- `, and the
/// indent and text of what follows them.
struct Line<'a> {
    number: usize,
    dashes: Vec<usize>,
    indent: usize,
    text: &'a str,
}

impl Line<'_> {
    /// Where the line starts, for telling whether it is still inside a block.
    fn start(&self) -> usize {
        self.dashes.first().copied().unwrap_or(self.indent)
    }
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let mut indent = raw.len() - raw.trim_start_matches(' ').len();
        let mut rest = &raw[indent..];
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        let mut dashes = Vec::new();
        while let Some(after) =
            rest.strip_prefix("- ")
                .or(if rest == "-" { Some("") } else { None })
        {
            dashes.push(indent);
            let spaces = after.len() - after.trim_start_matches(' ').len();
            indent += 2 + spaces;
            rest = &after[spaces..];
        }
        out.push(Line {
            number: i + 1,
            dashes,
            indent,
            text: rest,
        });
    }
    out
}

enum Seg {
    Key(String),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            if let Ok(n) = inner[..end].parse() {
                out.push(Seg::Index(n));
            }
            rest = &inner[end + 1..];
        }
    }
    out
}

fn is_key(text: &str, key: &str) -> bool {
    [key.to_string(), format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .any(|k| {
            text.strip_prefix(k.as_str())
                .and_then(|r| r.strip_prefix(':'))
                .is_some_and(|r| r.is_empty() || r.starts_with(' '))
        })
}

/// The 1-based line of `path` in `text`, or of its deepest parent found; `None` when
/// not even the first segment is there (or the path is empty).
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let lines = lines(text);
    let segs = segments(path);
    let mut found = None;
    // The search starts at `pos`; lines that start left of `floor` end the block.
    let (mut pos, mut floor) = (0usize, 0usize);
    let mut i = 0;
    'segs: while i < segs.len() {
        match &segs[i] {
            Seg::Key(_) => {
                // Keys may hold dots (`gpt-4.1`): the longest run of segments that is a
                // key here wins.
                let run = segs[i..]
                    .iter()
                    .take_while(|s| matches!(s, Seg::Key(_)))
                    .count();
                for take in (1..=run).rev() {
                    let key: Vec<&str> = segs[i..i + take]
                        .iter()
                        .filter_map(|s| match s {
                            Seg::Key(k) => Some(k.as_str()),
                            Seg::Index(_) => None,
                        })
                        .collect();
                    let key = key.join(".");
                    let mut level = None;
                    for (j, l) in lines.iter().enumerate().skip(pos) {
                        // The line the search starts on may be a list item's, whose
                        // dash is left of the floor while its first key is inside.
                        if l.start() < floor && !(j == pos && l.indent >= floor) {
                            break;
                        }
                        let at = *level.get_or_insert(l.indent);
                        if l.indent == at && is_key(l.text, &key) {
                            found = Some(l.number);
                            pos = j + 1;
                            floor = l.indent + 1;
                            i += take;
                            continue 'segs;
                        }
                    }
                }
                break;
            }
            Seg::Index(n) => {
                let mut item_indent = None;
                let mut seen = 0;
                for (j, l) in lines.iter().enumerate().skip(pos) {
                    if l.start() < floor {
                        break;
                    }
                    let Some(d) = l
                        .dashes
                        .iter()
                        .copied()
                        .find(|d| item_indent.is_none_or(|i| *d == i))
                    else {
                        continue;
                    };
                    let at = *item_indent.get_or_insert(d);
                    if d != at {
                        continue;
                    }
                    if seen == *n {
                        found = Some(l.number);
                        pos = j;
                        floor = at + 1;
                        i += 1;
                        continue 'segs;
                    }
                    seen += 1;
                }
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const TEXT: &str = "\
# a comment
server:
  listen: [\"127.0.0.1:8080\"]
providers:
  openai:
    kind: openai
    base_url: \"not a url\"
models:
  gpt-4.1:
    targets:
      - provider: openai
      - provider: nope
        weight: 2
keys:
  - name: a
    limits: { rpm: -1 }
  - name: b
    limits:
      rpm: -2
    budgets:
      - { usd: 5, period: month }
      - usd: 5
        period: fortnight
";

    #[test]
    fn fields_are_found_on_their_lines() {
        assert_eq!(line_of(TEXT, "providers.openai.base_url"), Some(7));
        assert_eq!(
            line_of(TEXT, "models.gpt-4.1.targets[1].provider"),
            Some(12)
        );
        assert_eq!(line_of(TEXT, "models.gpt-4.1.targets[1].weight"), Some(13));
        assert_eq!(line_of(TEXT, "keys[1].limits.rpm"), Some(19));
        assert_eq!(line_of(TEXT, "keys[1].budgets[1].period"), Some(23));
        assert_eq!(line_of(TEXT, "keys[0].name"), Some(15));
    }

    #[test]
    fn flow_style_and_missing_fields_point_at_the_nearest_parent() {
        assert_eq!(line_of(TEXT, "keys[0].limits.rpm"), Some(16));
        assert_eq!(line_of(TEXT, "keys[1].budgets[0].usd"), Some(21));
        assert_eq!(line_of(TEXT, "providers.openai.timeouts.idle"), Some(5));
        assert_eq!(line_of(TEXT, "keys[7].name"), Some(14));
        assert_eq!(line_of(TEXT, "store.url"), None);
        assert_eq!(line_of(TEXT, ""), None);
        assert_eq!(line_of("", "a.b"), None);
    }
}
