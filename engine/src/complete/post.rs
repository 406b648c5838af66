//! Post-processing of a stopped candidate (completion-systems.md §2.4): drop repetition loops,
//! trim what repeats the text after the cursor, balance brackets against the suffix, trim the
//! end, drop what is left blank.
//!
//! Every rule only narrows the text, so the result is a byte range of the raw candidate: the
//! caller can tell which tokens it kept (for mean log-probability) without re-tokenizing.

use std::ops::Range;

use super::stop::{Cursor, Mode};

/// The part of `text` to show, or `None` when nothing worth showing is left.
pub fn process(text: &str, cx: &Cursor, mode: Mode) -> Option<Range<usize>> {
    let mut end = cut_repetition(text, cx.line_prefix());
    end = trim_suffix_lines(text.get(..end)?, cx, mode);
    end = balance_line(text.get(..end)?, cx);
    let kept = text.get(..end)?;
    end = kept.trim_end().len();
    // A space typed before the cursor and one generated after it: keep one (Continue).
    let start = usize::from(cx.prefix.ends_with(' ') && !cx.line_prefix().trim().is_empty() && kept.starts_with(' '));
    let shown = text.get(start..end)?;
    (!shown.trim().is_empty()).then_some(start..end)
}

/// Cuts repetition loops: a line ending in a unit repeated many times (Tabby's
/// `(.{3,}?)\1{5,}$` and `(.{10,}?)\1{3,}$`) is dropped from its start, and a group of up to 4
/// lines repeated 3 times in a row is kept once. Returns the end of the kept text.
///
/// Lines are compared with their indentation (the first one after `line_prefix`, the cursor's
/// line before the cursor, so that it is the whole line too): nested closers such as
/// `        }` / `    }` / `}` are the same text at different depths, not a loop.
pub fn cut_repetition(text: &str, line_prefix: &str) -> usize {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let starts: Vec<usize> = lines.iter().scan(0, |at, l| {
        let start = *at;
        *at += l.len();
        Some(start)
    }).collect();
    let first = lines.first().map(|l| format!("{line_prefix}{l}"));
    let keys: Vec<&str> = lines.iter().enumerate().map(|(i, l)| match (i, &first) {
        (0, Some(f)) => f.trim_end(),
        _ => l.trim_end(),
    }).collect();
    for (i, line) in lines.iter().enumerate() {
        let body = line.trim_end_matches(['\n', '\r']);
        if repeats_at_end(body) {
            return starts.get(i).copied().unwrap_or(0);
        }
        for period in 1..=4 {
            let group = |k: usize| keys.get(i + k * period..i + (k + 1) * period);
            let (Some(a), Some(b), Some(c)) = (group(0), group(1), group(2)) else { continue };
            if a == b && b == c && a.iter().any(|l| !l.trim().is_empty()) {
                // Keep the first group, without its last newline.
                return starts.get(i + period).copied().unwrap_or(text.len()).saturating_sub(1);
            }
        }
    }
    text.len()
}

fn repeats_at_end(line: &str) -> bool {
    let chars: Vec<char> = line.chars().collect();
    let n = chars.len();
    (1..=n / 4).any(|unit| {
        let needed = if unit >= 10 { 4 } else if unit >= 3 { 6 } else { return false };
        if unit * needed > n {
            return false;
        }
        let tail = &chars[n - unit * needed..];
        let first = &tail[..unit];
        first.iter().any(|c| !c.is_whitespace()) && tail.chunks(unit).all(|c| c == first)
    })
}

/// Block mode: a completion line equal to the first non-blank line after the cursor, reached
/// with brackets balanced, is where the suffix takes over (Tabby's
/// `removeDuplicateSuffixLines`); cut before it.
fn trim_suffix_lines(text: &str, cx: &Cursor, mode: Mode) -> usize {
    if mode == Mode::Line {
        return text.len();
    }
    let Some(next) = cx.next_code_line().map(str::trim).or_else(|| Some(cx.line_suffix().trim()).filter(|l| !l.is_empty())) else {
        return text.len();
    };
    let mut depth = 0i32;
    let mut at = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i > 0 && depth <= 0 && line.trim() == next {
            return at.saturating_sub(1);
        }
        depth += bracket_delta(line);
        at += line.len();
    }
    text.len()
}

fn bracket_delta(line: &str) -> i32 {
    line.chars().map(|c| match c {
        '(' | '[' | '{' => 1,
        ')' | ']' | '}' => -1,
        _ => 0,
    })
    .sum()
}

/// One-line completions: choose among the full text, the text minus an overlap with the start
/// of the rest of the line (`a, b);` before `);`), and the text minus trailing closers, the
/// one whose brackets match best with the line prefix and the line suffix; ties go to the
/// shortest (what the suffix already holds need not be shown twice).
fn balance_line(text: &str, cx: &Cursor) -> usize {
    if text.contains('\n') {
        return text.len();
    }
    let rest = cx.line_suffix().trim_end();
    let mut ends = vec![text.len()];
    for (k, _) in rest.char_indices().skip(1).chain([(rest.len(), ' ')]) {
        let head = rest.get(..k).unwrap_or_default();
        if !head.trim().is_empty() && text.ends_with(head) {
            ends.push(text.len() - head.len());
        }
    }
    let mut t = text.trim_end();
    while let Some(stripped) = t.strip_suffix([')', ']', '}']) {
        ends.push(stripped.len());
        t = stripped.trim_end();
    }
    let open = open_brackets(cx.line_prefix());
    let score = |end: usize| {
        let mid = text.get(..end).unwrap_or_default();
        bracket_errors(&open, mid, rest)
    };
    ends.sort_unstable();
    ends.dedup();
    let base = score(text.len());
    let best = ends.iter().copied().min_by_key(|&e| (score(e), e));
    // Only change the text when it strictly improves the brackets or removes an overlap.
    match best {
        Some(e) if score(e) < base || (score(e) == base && is_overlap(text, e, rest)) => e,
        _ => text.len(),
    }
}

fn is_overlap(text: &str, end: usize, rest: &str) -> bool {
    text.get(end..).is_some_and(|cut| !cut.trim().is_empty() && rest.starts_with(cut))
}

/// The brackets `prefix_line` leaves open, innermost last.
fn open_brackets(prefix_line: &str) -> Vec<char> {
    let mut stack = Vec::new();
    for c in prefix_line.chars() {
        match c {
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack
}

/// `(closers that match nothing, openers left open)` after `prefix_line + mid + rest`, given
/// the brackets `prefix_line` leaves `open`: compared between candidates only, so brackets
/// the line closes from earlier lines cost every candidate the same.
fn bracket_errors(open: &[char], mid: &str, rest: &str) -> (usize, usize) {
    let mut stack = open.to_vec();
    let mut errors = 0;
    for c in mid.chars().chain(rest.chars()) {
        match c {
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.last() == Some(&open) {
                    stack.pop();
                } else {
                    errors += 1;
                }
            }
            _ => {}
        }
    }
    (errors, stack.len())
}
