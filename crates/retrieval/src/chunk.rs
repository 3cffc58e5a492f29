//! Chunking: an article's sections become parents (what goes into a prompt) and small
//! children (what is indexed and matched).
//!
//! Children are packed from whole paragraphs, list items and table rows up to a target
//! size in tokens, and a paragraph too long for one child is cut between sentences; only
//! a single sentence longer than a whole child is cut between words. Each child repeats
//! the last units of the one before it, up to the overlap, so a fact that straddles two
//! children is whole in one of them. A parent is a section, or a run of its paragraphs
//! when the section is too long for a prompt.
//!
//! Invariant: every child lies inside exactly one parent, and every word of a section is
//! in at least one child and exactly one parent.

use crate::article::Section;
use crate::text::sentence_spans;

/// How articles are cut.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkingConfig {
    /// Tokens a child aims at and does not exceed unless one sentence alone does.
    pub target_tokens: usize,
    /// Share of a child repeated from the end of the one before it (whole units only).
    pub overlap: f32,
    /// Tokens a parent may hold before its section is split into several parents.
    pub max_parent_tokens: usize,
}

impl Default for ChunkingConfig {
    fn default() -> Self {
        // 160 tokens sit well inside the embedding model's 256-token window, titles and
        // headings included; 800 tokens keep five parents inside a small model's prompt.
        Self { target_tokens: 160, overlap: 0.15, max_parent_tokens: 800 }
    }
}

impl ChunkingConfig {
    /// Whether the settings make sense; the problem, naming the setting, when they do not.
    pub fn validate(&self) -> Result<(), String> {
        if !(16..=2048).contains(&self.target_tokens) {
            return Err(format!("target_tokens is {}; expected 16 to 2048", self.target_tokens));
        }
        if !(0.0..=0.5).contains(&self.overlap) {
            return Err(format!("overlap is {}; expected 0.0 to 0.5", self.overlap));
        }
        if self.max_parent_tokens < self.target_tokens {
            return Err(format!(
                "max_parent_tokens is {}; expected at least target_tokens ({})",
                self.max_parent_tokens, self.target_tokens
            ));
        }
        Ok(())
    }
}

/// A passage given to a model: a section, or part of a long one.
#[derive(Debug, Clone, PartialEq)]
pub struct Parent {
    /// Position among the article's parents.
    pub ordinal: usize,
    pub heading: String,
    pub text: String,
    pub tokens: usize,
}

/// A passage indexed for search, inside one parent.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    /// Position among the article's children.
    pub ordinal: usize,
    /// The `ordinal` of its parent.
    pub parent: usize,
    pub text: String,
    pub tokens: usize,
}

/// An article cut into parents and children.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunks {
    pub parents: Vec<Parent>,
    pub children: Vec<Child>,
}

/// Tokens of `text` estimated from its words, for when no tokenizer is at hand: English
/// prose averages about 1.3 word-piece tokens a word.
pub fn estimate_tokens(text: &str) -> usize {
    let words = text.split_whitespace().count();
    (words * 13).div_ceil(10)
}

/// Cuts `sections` into parents and children, measuring text with `count`.
pub fn chunk_sections(sections: &[Section], config: &ChunkingConfig, count: &dyn Fn(&str) -> usize) -> Chunks {
    let mut chunks = Chunks::default();
    for section in sections {
        let blocks = blocks(&section.text, config.target_tokens, count);
        for group in parent_groups(&blocks, config.max_parent_tokens) {
            let parent = chunks.parents.len();
            let text = join(group.iter().flat_map(|b| b.units.iter()));
            let tokens = count(&text);
            chunks.parents.push(Parent { ordinal: parent, heading: section.heading.clone(), text, tokens });
            let units: Vec<&Unit> = group.iter().flat_map(|b| b.units.iter()).collect();
            for text in pack(&units, config) {
                let tokens = count(&text);
                chunks.children.push(Child { ordinal: chunks.children.len(), parent, text, tokens });
            }
        }
    }
    chunks
}

/// The smallest piece a child is built from, and how it joins the piece before it.
#[derive(Debug, Clone)]
struct Unit {
    text: String,
    tokens: usize,
    joiner: &'static str,
}

/// A paragraph, list or table: the units it was cut into.
#[derive(Debug)]
struct Block {
    units: Vec<Unit>,
    tokens: usize,
}

/// The blocks of a section (separated by blank lines), each cut into units no longer
/// than `target` where the text allows: a block that fits is one unit; a list or table
/// that does not is cut into its lines; prose into sentences; a sentence into words.
fn blocks(text: &str, target: usize, count: &dyn Fn(&str) -> usize) -> Vec<Block> {
    let mut blocks = Vec::new();
    for raw in text.split("\n\n").map(str::trim).filter(|b| !b.is_empty()) {
        let mut units = Vec::new();
        let whole = count(raw);
        if whole <= target {
            units.push(Unit { text: raw.to_owned(), tokens: whole, joiner: "\n\n" });
        } else if is_line_structured(raw) {
            for line in raw.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()) {
                push_fitting(&mut units, line, "\n", target, count);
            }
        } else {
            let flat = raw.split_whitespace().collect::<Vec<_>>().join(" ");
            for span in sentence_spans(&flat) {
                push_fitting(&mut units, &flat[span], " ", target, count);
            }
        }
        if let Some(first) = units.first_mut() {
            first.joiner = "\n\n";
        }
        let tokens = units.iter().map(|u| u.tokens).sum();
        blocks.push(Block { units, tokens });
    }
    blocks
}

/// Lists, tables and code are cut at lines, not sentences.
fn is_line_structured(block: &str) -> bool {
    let lines: Vec<&str> = block.lines().map(str::trim_start).filter(|l| !l.is_empty()).collect();
    let structured = |l: &&&str| {
        l.starts_with(['-', '*', '+', '|', '>'])
            || l.starts_with("```")
            || l.split_once(['.', ')']).is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    };
    lines.len() > 1 && lines.iter().filter(structured).count() * 2 >= lines.len()
}

/// Adds `piece` as one unit, or, when it is longer than `target`, as runs of words that fit.
fn push_fitting(
    units: &mut Vec<Unit>,
    piece: &str,
    joiner: &'static str,
    target: usize,
    count: &dyn Fn(&str) -> usize,
) {
    let tokens = count(piece);
    if tokens <= target {
        units.push(Unit { text: piece.to_owned(), tokens, joiner });
        return;
    }
    // The first run joins what came before as the piece would have; the rest continue it.
    let mut joiner = joiner;
    let mut run: Vec<&str> = Vec::new();
    for word in piece.split_whitespace() {
        run.push(word);
        if run.len() > 1 && count(&run.join(" ")) > target {
            let last = run.pop().unwrap_or_default();
            let text = run.join(" ");
            units.push(Unit { tokens: count(&text), text, joiner });
            joiner = " ";
            run = vec![last];
        }
    }
    if !run.is_empty() {
        let text = run.join(" ");
        units.push(Unit { tokens: count(&text), text, joiner });
    }
}

/// The blocks of one section grouped into parents of at most `max` tokens (a single
/// larger block is a parent of its own).
fn parent_groups(blocks: &[Block], max: usize) -> Vec<&[Block]> {
    let mut groups = Vec::new();
    let (mut start, mut tokens) = (0, 0);
    for (i, block) in blocks.iter().enumerate() {
        if i > start && tokens + block.tokens > max {
            groups.push(&blocks[start..i]);
            (start, tokens) = (i, 0);
        }
        tokens += block.tokens;
    }
    if start < blocks.len() {
        groups.push(&blocks[start..]);
    }
    groups
}

/// Packs units into children of at most `target` tokens, each starting with the last
/// units of the one before it up to the overlap.
fn pack(units: &[&Unit], config: &ChunkingConfig) -> Vec<String> {
    let target = config.target_tokens;
    let overlap = (target as f32 * config.overlap) as usize;
    let mut children = Vec::new();
    let mut current: Vec<&Unit> = Vec::new();
    let mut tokens = 0;
    for &unit in units {
        if !current.is_empty() && tokens + unit.tokens > target {
            children.push(join(current.iter().copied()));
            let carried = carry(&current, overlap);
            current = current.split_off(current.len() - carried);
            tokens = current.iter().map(|u| u.tokens).sum();
            if tokens + unit.tokens > target {
                current.clear();
                tokens = 0;
            }
        }
        current.push(unit);
        tokens += unit.tokens;
    }
    if !current.is_empty() {
        children.push(join(current.iter().copied()));
    }
    children
}

/// How many units at the end of `units` fit in `budget` tokens, never all of them.
fn carry(units: &[&Unit], budget: usize) -> usize {
    let mut used = 0;
    let mut n = 0;
    for unit in units.iter().rev() {
        if n + 1 >= units.len() || used + unit.tokens > budget {
            break;
        }
        used += unit.tokens;
        n += 1;
    }
    n
}

fn join<'a>(units: impl Iterator<Item = &'a Unit>) -> String {
    let mut text = String::new();
    for unit in units {
        if !text.is_empty() {
            text.push_str(unit.joiner);
        }
        text.push_str(&unit.text);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    fn section(text: &str) -> Section {
        Section { ordinal: 0, heading: "Returns".into(), text: text.into() }
    }

    fn config(target: usize, overlap: f32, max_parent: usize) -> ChunkingConfig {
        ChunkingConfig { target_tokens: target, overlap, max_parent_tokens: max_parent }
    }

    /// `n` sentences of five words each: "S1 is sentence number one." and so on.
    fn sentences(n: usize) -> String {
        (1..=n).map(|i| format!("S{i} is sentence number {i}.")).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn a_short_section_is_one_parent_and_one_child() {
        let chunks = chunk_sections(&[section("Para one.\n\nPara two.")], &ChunkingConfig::default(), &words);
        assert_eq!(chunks.parents.len(), 1);
        assert_eq!(chunks.children.len(), 1);
        assert_eq!(chunks.children[0].text, "Para one.\n\nPara two.");
        assert_eq!(chunks.parents[0].heading, "Returns");
    }

    #[test]
    fn long_prose_is_cut_between_sentences_with_overlap() {
        let chunks = chunk_sections(&[section(&sentences(12))], &config(20, 0.25, 1000), &words);
        let texts: Vec<&str> = chunks.children.iter().map(|c| c.text.as_str()).collect();
        assert!(texts.len() >= 3, "{texts:?}");
        for child in &chunks.children {
            assert!(child.tokens <= 20, "{child:?}");
            assert!(child.text.ends_with('.') && child.text.starts_with('S'), "whole sentences: {child:?}");
        }
        // Each child starts with the last sentence of the one before it (5 ≤ 25% of 20).
        for pair in texts.windows(2) {
            let last_of_first = pair[0].rsplit(". ").next().unwrap();
            assert!(pair[1].starts_with(last_of_first), "{pair:?}");
        }
    }

    #[test]
    fn no_overlap_means_children_share_nothing() {
        let chunks = chunk_sections(&[section(&sentences(12))], &config(20, 0.0, 1000), &words);
        let total: usize = chunks.children.iter().map(|c| c.tokens).sum();
        assert_eq!(total, 60, "every word exactly once");
    }

    #[test]
    fn a_list_is_cut_between_items_not_inside_them() {
        let list = (1..=10).map(|i| format!("- item {i} has four words")).collect::<Vec<_>>().join("\n");
        let chunks = chunk_sections(&[section(&list)], &config(16, 0.0, 1000), &words);
        assert!(chunks.children.len() >= 3);
        for child in &chunks.children {
            assert!(child.text.lines().all(|l| l.starts_with("- item ") && l.ends_with("four words")), "{child:?}");
        }
    }

    #[test]
    fn one_sentence_longer_than_a_child_is_cut_between_words() {
        let long = format!("{}.", vec!["word"; 50].join(" "));
        let chunks = chunk_sections(&[section(&long)], &config(16, 0.0, 1000), &words);
        assert!(chunks.children.iter().all(|c| c.tokens <= 16), "{:?}", chunks.children);
        assert_eq!(chunks.children.iter().map(|c| c.tokens).sum::<usize>(), 50);
    }

    #[test]
    fn a_long_section_becomes_several_parents_each_holding_its_children() {
        let paragraphs = (0..6).map(|_| sentences(4)).collect::<Vec<_>>().join("\n\n");
        let chunks = chunk_sections(&[section(&paragraphs)], &config(16, 0.0, 45), &words);
        assert_eq!(chunks.parents.len(), 3, "two 20-word paragraphs per parent");
        for child in &chunks.children {
            let parent = &chunks.parents[child.parent];
            assert!(parent.text.contains(&child.text), "{child:?} is inside {parent:?}");
        }
    }

    #[test]
    fn several_sections_number_parents_and_children_across_the_article() {
        let sections = [section("First."), Section { ordinal: 1, heading: "Refunds".into(), text: "Second.".into() }];
        let chunks = chunk_sections(&sections, &ChunkingConfig::default(), &words);
        let ordinals: Vec<(usize, usize)> = chunks.children.iter().map(|c| (c.ordinal, c.parent)).collect();
        assert_eq!(ordinals, [(0, 0), (1, 1)]);
        assert_eq!(chunks.parents[1].heading, "Refunds");
    }

    #[test]
    fn settings_out_of_range_are_named() {
        assert!(config(8, 0.1, 100).validate().unwrap_err().contains("target_tokens"));
        assert!(config(100, 0.9, 100).validate().unwrap_err().contains("overlap"));
        assert!(config(100, 0.1, 50).validate().unwrap_err().contains("max_parent_tokens"));
        assert!(ChunkingConfig::default().validate().is_ok());
    }

    #[test]
    fn estimated_tokens_grow_with_words() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("one two three four five six seven eight nine ten"), 13);
    }
}
