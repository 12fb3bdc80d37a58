//! Turns an HTML page into readable text for a model: drops comments, `<script>`, `<style>`,
//! `<noscript>` and `<template>` contents and every tag, breaks lines at block elements,
//! decodes the common entities and collapses whitespace. Not a parser: it never fails, and it
//! makes one pass over the input.

const DROPPED_CONTENT: [&str; 4] = ["script", "style", "noscript", "template"];

const BLOCKS: [&str; 30] = [
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "dd",
    "div",
    "dl",
    "dt",
    "figcaption",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "title",
    "tr",
];

/// The readable text of an HTML document.
pub fn to_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        text.push_str(&decode_entities(&rest[..start]));
        let tag = &rest[start..];
        if let Some(comment) = tag.strip_prefix("<!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let Some(name) = tag_name(tag) else {
            // A lone '<' ("a < b") is text.
            text.push('<');
            rest = &tag[1..];
            continue;
        };
        let closing = tag.as_bytes().get(1) == Some(&b'/');
        rest = &tag[tag_end(tag)..];
        if BLOCKS.contains(&name.as_str()) {
            text.push('\n');
        } else if matches!(name.as_str(), "td" | "th") {
            text.push(' ');
        }
        if !closing && DROPPED_CONTENT.contains(&name.as_str()) {
            rest = skip_past_closing(rest, &name);
        }
    }
    text.push_str(&decode_entities(rest));
    collapse_whitespace(&text)
}

/// The lower-case name of the tag `tag` starts with (`<div`, `</div`, `<!DOCTYPE`), or `None`
/// when the `<` does not open a tag.
fn tag_name(tag: &str) -> Option<String> {
    let after = tag[1..].strip_prefix('/').unwrap_or(&tag[1..]);
    let after = after
        .strip_prefix('!')
        .or_else(|| after.strip_prefix('?'))
        .unwrap_or(after);
    let name: String = after
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == ':')
        .collect();
    let first_is_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    (first_is_letter || tag[1..].starts_with(['!', '?'])).then(|| name.to_ascii_lowercase())
}

/// The byte index just past the `>` closing the tag `tag` starts with (quoted attribute values
/// may contain `>`), or the end of the input.
fn tag_end(tag: &str) -> usize {
    let mut quote = None;
    for (i, c) in tag.char_indices().skip(1) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '>') => return i + 1,
            _ => {}
        }
    }
    tag.len()
}

/// What follows `</name ...>` (case-insensitive), or nothing if it never closes. Linear: the
/// caller continues after the match.
fn skip_past_closing<'a>(rest: &'a str, name: &str) -> &'a str {
    let needle = format!("</{name}");
    let found = rest
        .as_bytes()
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle.as_bytes()));
    match found {
        // The match starts with '<', an ASCII byte: a character boundary.
        Some(at) => &rest[at + tag_end(&rest[at..])..],
        None => "",
    }
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let candidate = &rest[amp + 1..];
        // Entities are short: look for the ';' nearby only, so text full of '&' stays linear.
        let decoded = candidate
            .bytes()
            .take(11)
            .position(|b| b == b';')
            .and_then(|end| decode_entity(&candidate[..end]).map(|c| (c, end)));
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &candidate[end + 1..];
            }
            None => {
                out.push('&');
                rest = candidate;
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_entity(entity: &str) -> Option<char> {
    if let Some(number) = entity.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        return Some(
            char::from_u32(code)
                .filter(|c| *c != '\0')
                .unwrap_or('\u{fffd}'),
        );
    }
    Some(match entity {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "bull" => '•',
        "middot" => '·',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "pound" => '£',
        "deg" => '°',
        "times" => '×',
        _ => return None,
    })
}

/// Runs of whitespace become one space, or one line break if they contained one; lines are
/// trimmed and blank lines dropped.
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_none() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        for (i, word) in words.enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_a_page_to_its_text() {
        let page = r#"<!DOCTYPE html>
<html><head><title>The  Title</title>
<style>body { color: red; }</style>
<script type="text/javascript">if (a < b && c > d) { alert("x</p>"); }</script>
</head>
<body>
  <!-- a comment <p>hidden</p> -->
  <h1 class="big">Hello&nbsp;&amp; welcome</h1>
  <p>Fish &lt;3 chips, <b>bold</b>ly &#8212; &#x263A; &copy; &unknown; AT&T</p>
  <a href="/x" title="a > b">link</a><br/>next
  <SCRIPT>evil()</SCRIPT>
  <ul><li>one</li><li>two</li></ul>
  <table><tr><td>a</td><td>b</td></tr></table>
  1 < 2
</body></html>"#;
        assert_eq!(
            to_text(page),
            "The Title\nHello & welcome\nFish <3 chips, boldly — ☺ © &unknown; AT&T\nlink\nnext\none\ntwo\na b\n1 < 2"
        );
    }

    #[test]
    fn survives_broken_markup() {
        assert_eq!(to_text("text <script>never closed"), "text");
        assert_eq!(to_text("a <!-- never closed"), "a");
        assert_eq!(to_text("a <div class=\"x"), "a");
        assert_eq!(to_text("<"), "<");
        assert_eq!(to_text("&#xFFFFFFFF; &#0; &#;"), "\u{fffd} \u{fffd} &#;");
        assert_eq!(to_text("é<i>ü</i>ß"), "éüß");
        assert_eq!(to_text(""), "");
    }
}
