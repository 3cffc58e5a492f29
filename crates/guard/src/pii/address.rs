//! Postal addresses, best effort: there is no checksum for an address, so this finds the
//! parts people write in recognisable shapes — a number and a street with its type
//! ("24 Clarke Avenue", "Friedhofstrasse 33", "Rua Diadema 1903"), a unit ("Apt. 117",
//! "Suite 464"), a military or post-office box ("PSC 3294, Box 9168", "APO AA 61487",
//! "P.O. Box 12"), and a US city line ("Grand Rapids, MI 49503") — and joins those that
//! follow one another into one finding.

use std::ops::Range;

use regex::Regex;

/// The street types that end a street name in English-speaking countries.
const STREET_TYPES: &str = "street|st|road|rd|avenue|ave|av|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|\
    square|sq|terrace|crescent|close|parkway|pkwy|highway|hwy|circle|cir|trail|trl|row|mews|walk|grove|gardens|\
    hill|park|view|alley|loop|path|pike|plaza|point|ridge|vista|crossing|forges?|ports?|\
    heights|meadows?|springs?|station|summit|valley|villages?|wells?|junction|estates?|landing|manor|orchard|\
    island|harbor|harbour|bypass|causeway|expressway|freeway|motorway|rise|wynd|gateway|union|courts|pass|str";

/// The street types certain enough to be taken after words in lower case ("12 fourth avenue").
const STRONG_STREET_TYPES: &str =
    "street|road|avenue|boulevard|lane|drive|court|close|square|terrace|crescent|place|way";

/// Street words that come first elsewhere ("Rua …", "Via …", "Calle …").
const STREET_FIRST: &str = "rua|via|viale|rue|calle|carrer|avenida|av\\.|avda\\.|chemin|piazza|plaza|praça|\
    largo|travessa|ulica|ul\\.|utca|út|strada|straße|odos|leoforos";

/// Endings of one-word street names ("Friedhofstrasse", "Koskikatu", "Rooseveltlaan").
const STREET_ENDINGS: &str = "straße|strasse|straeti|stræti|weg|gasse|allee|platz|laan|straat|gracht|plein|\
    vej|vænget|gade|gata|gatan|vägen|veien|vegen|vegur|katu|tie|tien|kuja|polku|tér|utca|ulice|cesta";

pub struct AddressFinder {
    parts: Vec<Regex>,
    joiner: Regex,
}

impl AddressFinder {
    pub fn new() -> Self {
        let compile = |pattern: String| Regex::new(&pattern).expect("the address expressions are valid");
        let name = r"\p{Lu}[\p{L}'\-]*\.?";
        let lower = r"[\p{Ll}][\p{L}'\-]*";
        let number = r"\d{1,6}[a-zA-Z]?(?: \d{1,5})?";
        let parts = vec![
            // 24 Clarke Avenue, 9448 175 Iroon Polytechniou Avenue, 2450 Crown St
            compile(format!(r"\b{number} (?:(?:{name}|de|la|du|van|von) ){{1,4}}(?i:{STREET_TYPES})\b\.?")),
            // 3747 3911 fourth avenue
            compile(format!(r"(?i)\b{number} (?:{lower} ){{1,3}}(?:{STRONG_STREET_TYPES})\b")),
            // Friedhofstrasse 33, 6750 Koskikatu 25, 5586 Þórunnarstræti 31
            compile(format!(r"(?i)\b(?:{number} )?[\p{{L}}\-]*(?:{STREET_ENDINGS}) \d{{1,5}}[a-z]?\b")),
            // Rua Diadema 1903, Via Roma 131, 36 rue de pologne
            compile(format!(r"(?i)(?:\b{number} )?\b(?:{STREET_FIRST}) (?:[\p{{L}}'\-]+ ){{0,4}}[\p{{L}}'\-]+(?: \d{{1,5}}[a-z]?\b)?")),
            // Kálmán Imre u. 12.
            compile(format!(r"\b(?:{name} ){{1,3}}u\. \d{{1,5}}\.?")),
            // Apt. 117, Suite 464, Unit 5022 Box 1225
            compile(r"(?i)\b(?:apt\.?|apartment|suite|ste\.?|unit|flat|floor|fl\.)\s?#?\s?\d{1,6}[a-z]?\b(?:,? box \d{1,6}\b)?".into()),
            // PSC 3294, Box 9168; USNS Bergman; APO AA 61487
            compile(r"\b(?:PSC|CMR|USNS|USS|USCGC|psc|cmr|usns|uss) [\w]+(?:,? (?:Box|box) \d{1,6})?".into()),
            compile(r"\b(?:APO|FPO|DPO|apo|fpo|dpo) (?:AA|AE|AP|aa|ae|ap) \d{5}\b".into()),
            // P.O. Box 12
            compile(r"(?i)\bp\.? ?o\.? box \d{1,6}\b".into()),
            // Grand Rapids, MI 49503
            compile(r"\b(?:\p{Lu}[\p{Ll}'\-]+ ){0,3}\p{Lu}[\p{Ll}'\-]+, \p{Lu}{2} \d{5}(?:-\d{4})?\b".into()),
        ];
        AddressFinder { parts, joiner: Regex::new(r"^[\s,]*$").expect("valid") }
    }

    /// The addresses in `text`: each part found, and parts separated only by commas and
    /// white space joined into one.
    pub fn find(&self, text: &str) -> Vec<Range<usize>> {
        let mut parts: Vec<Range<usize>> =
            self.parts.iter().flat_map(|part| part.find_iter(text).map(|m| m.range())).collect();
        parts.sort_by_key(|range| (range.start, std::cmp::Reverse(range.end)));
        let mut joined: Vec<Range<usize>> = Vec::new();
        for part in parts {
            match joined.last_mut() {
                Some(last) if part.start <= last.end || self.joiner.is_match(&text[last.end..part.start]) => {
                    last.end = last.end.max(part.end);
                }
                _ => joined.push(part),
            }
        }
        joined
    }
}
