//! Documents in the formats a help centre is kept in (Markdown, plain text, HTML, PDF),
//! turned into articles: Markdown bodies with `##` sections, and the metadata they are
//! cited by.
//!
//! Markdown may carry TOML front matter between `+++` lines (id, title, category, product,
//! url, updated); whatever a document does not say is derived: the id from its path, the
//! title from its first heading (or HTML `<title>`, or first line), the category from its
//! folder. A PDF's text is extracted with `pdf-extract`; its line breaks are undone within
//! paragraphs, and a short line standing alone becomes a section heading.
//!
//! Invariant: every format ends as the same `Article`, so chunking, indexing and citing
//! never depend on where a text came from.

use std::path::{Path, PathBuf};

use scraper::{ElementRef, Html, Node};

use crate::article::{Article, ArticleError};

/// The formats read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Markdown,
    Text,
    Html,
    Pdf,
}

impl SourceFormat {
    /// The format a file name's extension says, if it is one read.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "md" | "markdown" => Some(Self::Markdown),
            "txt" | "text" => Some(Self::Text),
            "html" | "htm" => Some(Self::Html),
            "pdf" => Some(Self::Pdf),
            _ => None,
        }
    }

    /// The format named by a media type (`text/html; charset=utf-8`) or a short name.
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match name.as_str() {
            "markdown" | "md" | "text/markdown" => Some(Self::Markdown),
            "text" | "txt" | "text/plain" => Some(Self::Text),
            "html" | "text/html" => Some(Self::Html),
            "pdf" | "application/pdf" => Some(Self::Pdf),
            _ => None,
        }
    }

    /// Whether documents of this format are bytes rather than text.
    pub fn is_binary(self) -> bool {
        self == Self::Pdf
    }
}

/// What a document is known as when its own text does not say.
#[derive(Debug, Clone, Default)]
pub struct SourceDefaults {
    pub id: String,
    pub title: Option<String>,
    pub category: String,
    pub product: Option<String>,
    pub url: Option<String>,
}

impl SourceDefaults {
    /// Defaults for the file at `path` inside the folder `root`: id `billing/refunds` for
    /// `root/billing/refunds.html`, category `billing` (`general` at the top).
    pub fn for_file(root: &Path, path: &Path) -> Self {
        let relative = path.strip_prefix(root).unwrap_or(path);
        let id = relative
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let category = match relative.parent().and_then(|p| p.components().next()) {
            Some(first) => first.as_os_str().to_string_lossy().into_owned(),
            None => "general".to_owned(),
        };
        Self { id, category, ..Self::default() }
    }
}

/// Reads one document of `format` from its bytes: a PDF's extracted text, any other format
/// as UTF-8 (an invalid byte replaced rather than refused, as exported help centres often
/// hold a stray Latin-1 byte). `origin` names it in errors.
pub fn parse_document_bytes(
    origin: &Path,
    bytes: &[u8],
    format: SourceFormat,
    defaults: &SourceDefaults,
) -> Result<Article, ArticleError> {
    match format {
        SourceFormat::Pdf => parse_document(origin, &pdf_text(origin, bytes)?, SourceFormat::Text, defaults),
        _ => parse_document(origin, &String::from_utf8_lossy(bytes), format, defaults),
    }
}

/// Reads one text document of `format` into an article. `origin` names it in errors; a
/// PDF is bytes, read by [`parse_document_bytes`].
pub fn parse_document(
    origin: &Path,
    text: &str,
    format: SourceFormat,
    defaults: &SourceDefaults,
) -> Result<Article, ArticleError> {
    let (front, title, body) = match format {
        SourceFormat::Markdown => {
            let (front, body) = front_matter(origin, text)?;
            let (title, body) = markdown_title(body);
            (front, title, body)
        }
        SourceFormat::Text => {
            let (title, body) = text_title(text);
            (FrontMatter::default(), title, body)
        }
        SourceFormat::Html => {
            let (title, body) = html_to_markdown(text);
            (FrontMatter::default(), title, body)
        }
        SourceFormat::Pdf => {
            let message = "a PDF is bytes, not text: give its bytes".to_owned();
            return Err(ArticleError::Pdf { path: origin.to_owned(), message });
        }
    };
    let body = body.trim().to_owned();
    if body.is_empty() {
        return Err(ArticleError::EmptyBody { path: origin.to_owned() });
    }
    let id = front.id.unwrap_or_else(|| defaults.id.clone());
    if id.trim().is_empty() {
        return Err(ArticleError::FrontMatter { path: origin.to_owned(), message: "the document has no id".into() });
    }
    let title = front.title.or_else(|| defaults.title.clone()).or(title).unwrap_or_else(|| id.clone());
    Ok(Article {
        id,
        title,
        category: front.category.unwrap_or_else(|| defaults.category.clone()),
        product: front.product.or_else(|| defaults.product.clone()),
        url: front.url.or_else(|| defaults.url.clone()),
        updated: front.updated,
        body,
    })
}

/// Every document under `root`, in every folder, sorted by path so ids and order are
/// stable. Files of other formats are skipped; two documents with one id are an error.
pub fn load_folder(root: &Path) -> Result<Vec<Article>, ArticleError> {
    let mut paths = Vec::new();
    collect_files(root, &mut paths)?;
    paths.sort();
    let mut articles: Vec<Article> = Vec::with_capacity(paths.len());
    for path in paths {
        let Some(format) = SourceFormat::from_path(&path) else { continue };
        let bytes = std::fs::read(&path).map_err(|source| ArticleError::Read { path: path.clone(), source })?;
        let article = parse_document_bytes(&path, &bytes, format, &SourceDefaults::for_file(root, &path))?;
        if articles.iter().any(|a| a.id == article.id) {
            return Err(ArticleError::DuplicateId { path, id: article.id });
        }
        articles.push(article);
    }
    Ok(articles)
}

/// A PDF's text, one paragraph per block of lines, a short line standing alone as a `##`
/// heading, so that the chunker cuts it by section as it does Markdown.
fn pdf_text(origin: &Path, bytes: &[u8]) -> Result<String, ArticleError> {
    let fail = |message: String| ArticleError::Pdf { path: origin.to_owned(), message };
    if !bytes.starts_with(b"%PDF-") {
        return Err(fail("the file does not start with a %PDF- header".into()));
    }
    // pdf-extract panics on some malformed files instead of returning an error; a bad
    // upload must come back as a refusal, never take the process down.
    let extracted = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(bytes))
        .map_err(|_| fail("its structure is malformed".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let text = pdf_paragraphs(&extracted);
    if text.trim().is_empty() {
        return Err(fail("it holds no text (a scanned PDF needs OCR first)".into()));
    }
    Ok(text)
}

/// Undoes a PDF's layout: lines of one paragraph joined (a word hyphenated across a line
/// break rejoined), paragraphs parted by blank lines unless the next opens in lower case,
/// a block of one short line without closing punctuation taken for a heading. The first
/// paragraph is left as it is, so that a title line stays the document's title.
fn pdf_paragraphs(extracted: &str) -> String {
    let mut paragraphs: Vec<String> = Vec::new();
    let mut lines: Vec<&str> = Vec::new();
    let flush = |lines: &mut Vec<&str>, paragraphs: &mut Vec<String>| {
        if lines.is_empty() {
            return;
        }
        let one_line = lines.len() == 1;
        let mut joined = String::new();
        for line in lines.drain(..) {
            continue_with(&mut joined, &line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        // A block opening in lower case continues the one before, cut by a page break or
        // by the extractor's reading of a wider line gap.
        if let Some(last) = paragraphs.last_mut().filter(|last| !last.starts_with("## ")) {
            if opens_lower(&joined) {
                continue_with(last, &joined);
                return;
            }
        }
        let heading = !paragraphs.is_empty()
            && one_line
            && joined.chars().count() <= 70
            && !joined.ends_with(['.', ',', ';', ':', '?', '!', '-'])
            && joined.starts_with(|c: char| c.is_uppercase() || c.is_ascii_digit());
        paragraphs.push(if heading { format!("## {joined}") } else { joined });
    };
    for line in extracted.lines() {
        // Form feeds (page breaks) count as blank.
        let line = line.trim_matches(|c: char| c.is_whitespace() || c == '\u{c}');
        if line.is_empty() {
            flush(&mut lines, &mut paragraphs);
        } else {
            lines.push(line);
        }
    }
    flush(&mut lines, &mut paragraphs);
    paragraphs.join("\n\n")
}

fn opens_lower(text: &str) -> bool {
    text.starts_with(|c: char| c.is_lowercase())
}

/// Appends `next` to the text it continues: a word hyphenated across the break rejoined,
/// else a space between.
fn continue_with(text: &mut String, next: &str) {
    if text.ends_with('-') && opens_lower(next) {
        text.pop();
    } else if !text.is_empty() {
        text.push(' ');
    }
    text.push_str(next);
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ArticleError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ArticleError::Read { path: dir.to_owned(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| ArticleError::Read { path: dir.to_owned(), source })?;
        let path = entry.path();
        let name = entry.file_name();
        // Hidden files and folders (.git, .DS_Store) are never documents.
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    id: Option<String>,
    title: Option<String>,
    category: Option<String>,
    product: Option<String>,
    url: Option<String>,
    updated: Option<String>,
}

/// The front matter, if the text opens with `+++`, and the rest.
fn front_matter<'a>(origin: &Path, text: &'a str) -> Result<(FrontMatter, &'a str), ArticleError> {
    let Some(rest) = text.trim_start_matches('\u{feff}').strip_prefix("+++") else {
        return Ok((FrontMatter::default(), text));
    };
    let (front, body) =
        rest.split_once("\n+++").ok_or_else(|| ArticleError::NoFrontMatter { path: origin.to_owned() })?;
    let front = toml::from_str(front)
        .map_err(|e| ArticleError::FrontMatter { path: origin.to_owned(), message: e.message().to_owned() })?;
    Ok((front, body))
}

/// A leading `# Title` line is the title, not part of the body.
fn markdown_title(body: &str) -> (Option<String>, String) {
    let trimmed = body.trim_start();
    if let Some(first) = trimmed.lines().next() {
        if let Some(title) = first.strip_prefix("# ") {
            let rest = trimmed[first.len()..].to_owned();
            return (Some(title.trim().to_owned()), rest);
        }
    }
    (None, body.to_owned())
}

/// A plain-text document's first line is its title when a blank line follows it.
fn text_title(text: &str) -> (Option<String>, String) {
    let trimmed = text.trim_start();
    match trimmed.split_once("\n\n") {
        Some((first, rest)) if !first.contains('\n') && first.chars().count() <= 120 => {
            (Some(first.trim().to_owned()), rest.to_owned())
        }
        _ => (None, trimmed.to_owned()),
    }
}

/// An HTML page as Markdown: its `<title>` (or first `<h1>`), and its text with `<h2>`
/// as `##` sections, deeper headings as `###`, lists as `-` items, tables as `|` rows.
/// Scripts, styles, navigation, headers and footers are left out: they are the site, not
/// the article.
pub fn html_to_markdown(html: &str) -> (Option<String>, String) {
    let document = Html::parse_document(html);
    let mut writer = MarkdownWriter::default();
    let root = document.root_element();
    let body = root.children().filter_map(ElementRef::wrap).find(|e| e.value().name() == "body").unwrap_or(root);
    writer.element(body);
    writer.end_block();
    let page_title = root
        .descendants()
        .filter_map(ElementRef::wrap)
        .find(|e| e.value().name() == "title")
        .map(|e| collapse(&e.text().collect::<String>()))
        .filter(|t| !t.is_empty());
    let title = writer.h1.clone().or(page_title);
    (title, writer.blocks.join("\n\n"))
}

#[derive(Default)]
struct MarkdownWriter {
    blocks: Vec<String>,
    line: String,
    /// The first `<h1>`, taken as the title and kept out of the body.
    h1: Option<String>,
    /// Nesting of lists: ordered or not, and the next number.
    lists: Vec<Option<usize>>,
}

impl MarkdownWriter {
    fn element(&mut self, element: ElementRef<'_>) {
        let name = element.value().name();
        match name {
            "script" | "style" | "noscript" | "nav" | "header" | "footer" | "template" | "svg" | "head" | "form"
            | "button" | "iframe" => {}
            "h1" if self.h1.is_none() => {
                self.end_block();
                self.h1 = Some(collapse(&element.text().collect::<String>()));
            }
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.end_block();
                let marks = if matches!(name, "h1" | "h2") { "##" } else { "###" };
                let text = collapse(&element.text().collect::<String>());
                if !text.is_empty() {
                    self.blocks.push(format!("{marks} {text}"));
                }
            }
            "br" => self.line.push('\n'),
            "ul" | "ol" => {
                self.end_block();
                self.lists.push((name == "ol").then_some(1));
                self.children(element);
                self.lists.pop();
                self.end_block();
            }
            "li" => self.list_item(element),
            "table" => {
                self.end_block();
                self.table(element);
            }
            "pre" => {
                self.end_block();
                let code = element.text().collect::<String>();
                self.blocks.push(format!("```\n{}\n```", code.trim_end()));
            }
            "p" | "div" | "section" | "article" | "main" | "blockquote" | "dl" | "dt" | "dd" | "figure" | "aside" => {
                self.end_block();
                self.children(element);
                self.end_block();
            }
            _ => self.children(element),
        }
    }

    fn children(&mut self, element: ElementRef<'_>) {
        for child in element.children() {
            match child.value() {
                Node::Text(text) => self.text(text),
                Node::Element(_) => {
                    if let Some(child) = ElementRef::wrap(child) {
                        self.element(child);
                    }
                }
                _ => {}
            }
        }
    }

    fn text(&mut self, text: &str) {
        let collapsed = collapse(text);
        if collapsed.is_empty() {
            if !text.is_empty() && !self.line.is_empty() && !self.line.ends_with([' ', '\n']) {
                self.line.push(' ');
            }
            return;
        }
        let joins = !self.line.is_empty() && !self.line.ends_with([' ', '\n']);
        if joins && text.starts_with(char::is_whitespace) {
            self.line.push(' ');
        }
        self.line.push_str(&collapsed);
        if text.ends_with(char::is_whitespace) {
            self.line.push(' ');
        }
    }

    fn list_item(&mut self, element: ElementRef<'_>) {
        self.end_line();
        let depth = self.lists.len().saturating_sub(1);
        let marker = match self.lists.last_mut() {
            Some(Some(n)) => {
                let marker = format!("{n}. ");
                *n += 1;
                marker
            }
            _ => "- ".to_owned(),
        };
        let mut item = MarkdownWriter { lists: self.lists.clone(), ..Default::default() };
        item.children(element);
        item.end_block();
        let text = item.blocks.join("\n");
        let indent = "  ".repeat(depth);
        let mut lines = text.lines();
        if let Some(first) = lines.next() {
            self.line.push_str(&format!("{indent}{marker}{first}"));
            for line in lines {
                self.line.push_str(&format!("\n{indent}  {line}"));
            }
        }
        self.end_line();
    }

    fn table(&mut self, table: ElementRef<'_>) {
        let rows: Vec<Vec<String>> = table
            .descendants()
            .filter_map(ElementRef::wrap)
            .filter(|e| e.value().name() == "tr")
            .map(|row| {
                row.children()
                    .filter_map(ElementRef::wrap)
                    .filter(|c| matches!(c.value().name(), "td" | "th"))
                    .map(|cell| collapse(&cell.text().collect::<String>()).replace('|', "/"))
                    .collect()
            })
            .filter(|cells: &Vec<String>| !cells.is_empty())
            .collect();
        let Some(first) = rows.first() else { return };
        let mut lines = vec![format!("| {} |", first.join(" | "))];
        lines.push(format!("|{}|", vec!["---"; first.len()].join("|")));
        lines.extend(rows[1..].iter().map(|cells| format!("| {} |", cells.join(" | "))));
        self.blocks.push(lines.join("\n"));
    }

    /// Ends the current line inside a block (list items), keeping the block open.
    fn end_line(&mut self) {
        if !self.line.trim().is_empty() && !self.line.ends_with('\n') {
            self.line.push('\n');
        }
    }

    fn end_block(&mut self) {
        let text: Vec<&str> = self.line.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
        if !text.is_empty() {
            self.blocks.push(text.join("\n").trim().to_owned());
        }
        self.line.clear();
    }
}

/// Runs of whitespace as one space, trimmed.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> SourceDefaults {
        SourceDefaults { id: "billing/refunds".into(), category: "billing".into(), ..SourceDefaults::default() }
    }

    #[test]
    fn markdown_without_front_matter_takes_its_title_from_the_heading_and_the_rest_from_its_path() {
        let text = "# Getting a refund\n\nIntro.\n\n## How long\n\nFive days.";
        let article = parse_document(Path::new("refunds.md"), text, SourceFormat::Markdown, &defaults()).unwrap();
        assert_eq!((article.id.as_str(), article.title.as_str()), ("billing/refunds", "Getting a refund"));
        assert_eq!(article.category, "billing");
        assert!(article.body.starts_with("Intro.") && article.body.contains("## How long"), "{}", article.body);
    }

    #[test]
    fn front_matter_wins_over_what_the_path_says() {
        let text = "+++\nid = \"refunds\"\ntitle = \"Refunds\"\ncategory = \"payments\"\nurl = \"https://help.example/r\"\n+++\nBody.";
        let article = parse_document(Path::new("x.md"), text, SourceFormat::Markdown, &defaults()).unwrap();
        assert_eq!((article.id.as_str(), article.category.as_str()), ("refunds", "payments"));
        assert_eq!(article.url.as_deref(), Some("https://help.example/r"));
        let bad = parse_document(Path::new("x.md"), "+++\nidd = 1\n+++\nBody", SourceFormat::Markdown, &defaults());
        assert!(bad.unwrap_err().to_string().contains("x.md"));
    }

    #[test]
    fn unclosed_front_matter_and_two_documents_with_one_id_are_refused_naming_the_file() {
        let err = parse_document(Path::new("u.md"), "+++\nid = \"a\"\nBody", SourceFormat::Markdown, &defaults())
            .unwrap_err();
        assert!(matches!(err, ArticleError::NoFrontMatter { .. }) && err.to_string().contains("u.md"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.md"), "+++\nid = \"same\"\n+++\nOne.").unwrap();
        std::fs::write(dir.path().join("b.txt"), "Two\n\nThe second.").unwrap();
        std::fs::write(dir.path().join("c.md"), "+++\nid = \"same\"\n+++\nThree.").unwrap();
        let err = load_folder(dir.path()).unwrap_err();
        assert!(matches!(&err, ArticleError::DuplicateId { id, .. } if id == "same"), "{err}");
        assert!(err.to_string().contains("c.md"), "{err}");
    }

    #[test]
    fn plain_text_takes_its_first_line_as_title() {
        let article =
            parse_document(Path::new("a.txt"), "Refunds\n\nThey take five days.", SourceFormat::Text, &defaults())
                .unwrap();
        assert_eq!(article.title, "Refunds");
        assert_eq!(article.body, "They take five days.");
    }

    #[test]
    fn html_becomes_markdown_sections_lists_and_tables_without_the_site_around_it() {
        let html = r#"<html><head><title>Refunds | Acme Help</title><style>p{}</style></head><body>
            <nav><a href="/">Home</a></nav>
            <h1>Getting a refund</h1>
            <p>Refunds go back to the   original <b>payment method</b>.</p>
            <h2>How long it takes</h2>
            <ol><li>We receive the item.</li><li>We refund within <em>5 days</em>.</li></ol>
            <table><tr><th>Method</th><th>Time</th></tr><tr><td>Card</td><td>3–5 days</td></tr></table>
            <script>track()</script><footer>© Acme</footer></body></html>"#;
        let (title, body) = html_to_markdown(html);
        assert_eq!(title.as_deref(), Some("Getting a refund"));
        assert_eq!(
            body,
            "Refunds go back to the original payment method.\n\n## How long it takes\n\n1. We receive the item.\n2. We refund within 5 days.\n\n| Method | Time |\n|---|---|\n| Card | 3–5 days |"
        );
    }

    #[test]
    fn html_without_h1_is_titled_by_its_title_element() {
        let (title, body) = html_to_markdown("<title>Shipping</title><p>We ship <i>worldwide</i>.</p>");
        assert_eq!(title.as_deref(), Some("Shipping"));
        assert_eq!(body, "We ship worldwide.");
    }

    #[test]
    fn an_empty_document_is_refused_naming_it() {
        let err = parse_document(Path::new("e.html"), "<p> </p>", SourceFormat::Html, &defaults()).unwrap_err();
        assert!(matches!(err, ArticleError::EmptyBody { .. }), "{err}");
    }

    #[test]
    fn formats_are_known_by_extension_and_media_type() {
        assert_eq!(SourceFormat::from_path(Path::new("a/B.HTM")), Some(SourceFormat::Html));
        assert_eq!(SourceFormat::from_path(Path::new("a.PDF")), Some(SourceFormat::Pdf));
        assert_eq!(SourceFormat::from_path(Path::new("a.docx")), None);
        assert_eq!(SourceFormat::from_name("application/pdf"), Some(SourceFormat::Pdf));
        assert_eq!(SourceFormat::from_name("text/markdown; charset=utf-8"), Some(SourceFormat::Markdown));
        assert_eq!(SourceFormat::from_name("application/json"), None);
    }

    /// Made by `tests/fixtures/make_warranty_pdf.py` (fpdf2): a title, three headed
    /// sections, one of them running onto the second page, and a hyphenated line break.
    const WARRANTY_PDF: &[u8] = include_bytes!("../tests/fixtures/warranty.pdf");

    #[test]
    fn a_pdf_becomes_an_article_with_its_sections_and_whole_paragraphs() {
        let article =
            parse_document_bytes(Path::new("care/warranty.pdf"), WARRANTY_PDF, SourceFormat::Pdf, &defaults()).unwrap();
        assert_eq!(article.title, "Acme appliance warranty");
        let sections = crate::article::split_sections(&article);
        let headings: Vec<&str> = sections.iter().map(|s| s.heading.as_str()).collect();
        assert_eq!(
            headings,
            ["What the warranty covers", "What it does not cover", "How to make a claim"],
            "{}",
            article.body
        );
        assert!(
            sections[0].text.contains("two-year manufacturer warranty from the date of delivery."),
            "{}",
            sections[0].text
        );
        assert!(!sections[0].text.contains('\n'), "a paragraph's lines are joined: {:?}", sections[0].text);
        let claim = &sections[2].text;
        assert!(claim.contains("we refund the full price instead of repairing it"), "{claim}");
        assert!(claim.contains("repair centre's own desk"), "the hyphenated break is rejoined: {claim}");
    }

    #[test]
    fn a_file_that_is_not_a_readable_pdf_is_refused_not_a_crash() {
        let cases: [&[u8]; 4] =
            [b"Hello, not a PDF", b"%PDF-1.4\n%garbage", &WARRANTY_PDF[..WARRANTY_PDF.len() / 2], b""];
        for bytes in cases {
            let err = parse_document_bytes(Path::new("x.pdf"), bytes, SourceFormat::Pdf, &defaults()).unwrap_err();
            assert!(matches!(err, ArticleError::Pdf { .. }), "{err}");
        }
        let err = parse_document(Path::new("x.pdf"), "text", SourceFormat::Pdf, &defaults()).unwrap_err();
        assert!(matches!(err, ArticleError::Pdf { .. }));
    }

    #[test]
    fn pdf_layout_is_undone_into_paragraphs_and_headings() {
        let extracted = "Returns guide\n\nSending it back\n\nPack the item in its box and\nattach the la-\nbel we email. Then\n\x0c\ndrop it off.\n\nRefunds take five days.\n";
        assert_eq!(
            pdf_paragraphs(extracted),
            "Returns guide\n\n## Sending it back\n\nPack the item in its box and attach the label we email. Then drop it off.\n\nRefunds take five days."
        );
    }

    #[test]
    fn defaults_for_a_file_come_from_its_place_in_the_folder() {
        let d = SourceDefaults::for_file(Path::new("/kb"), Path::new("/kb/billing/refunds.html"));
        assert_eq!((d.id.as_str(), d.category.as_str()), ("billing/refunds", "billing"));
        let top = SourceDefaults::for_file(Path::new("/kb"), Path::new("/kb/faq.md"));
        assert_eq!((top.id.as_str(), top.category.as_str()), ("faq", "general"));
    }
}
