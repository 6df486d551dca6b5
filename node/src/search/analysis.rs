//! Language-aware text analysis: one tantivy text field and analyzer per stemming language,
//! and a fallback for every other language.
//!
//! A record's text in language `xx` goes into the field of `xx`'s analyzer: tokenised on
//! Unicode letters and digits, lowercased, stemmed with the Snowball stemmer of that
//! language (tantivy's `Stemmer`: da de el en es fi fr hu it nl no pt ro sv; Norwegian `nb`
//! and `nn` use the Norwegian one), then ASCII-folded so that `halsodata` typed without
//! diacritics still meets `hälsodata` (folding after stemming keeps the stemmer's rules, which
//! depend on å ä ö é …, intact).
//!
//! Languages without a Snowball stemmer in tantivy — Polish, Czech, Slovak, Slovenian,
//! Croatian, Bulgarian, Baltic languages, Irish, Maltese, Catalan, Galician … — go to one
//! `other` field: lowercased, ASCII-folded, and cut to their first [`TRUNCATE_CHARS`]
//! characters ("truncation stemming"). For suffix-inflected languages such as Polish this
//! joins most inflected forms of a word (`zdrowie`, `zdrowia`, `zdrowiu` → `zdrowi`) at the
//! cost of joining some unrelated long words that share a prefix; measured on other
//! suffix-inflected languages, cutting at 5–6 characters recovers most of what a real stemmer
//! gives. Greek has a stemmer, so it is not in the fallback.
//!
//! A query does not say its language: each query word is analysed by every analyzer and
//! looked up in that analyzer's field, so a Swedish word finds Swedish text stemmed the
//! Swedish way, whatever else the record holds (see `search::text_query`).

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    TextAnalyzer, Token, TokenFilter, TokenStream, Tokenizer,
};

/// Tokens longer than this many bytes (base64 blobs, URLs run together) are not indexed.
const MAX_TOKEN_BYTES: usize = 60;
/// Characters the fallback analyzer keeps of each word.
pub const TRUNCATE_CHARS: usize = 6;

/// Analyzer (and text field) names with their stemmer; `other` has none.
pub const STEMMED: &[(&str, Language)] = &[
    ("da", Language::Danish),
    ("de", Language::German),
    ("el", Language::Greek),
    ("en", Language::English),
    ("es", Language::Spanish),
    ("fi", Language::Finnish),
    ("fr", Language::French),
    ("hu", Language::Hungarian),
    ("it", Language::Italian),
    ("nl", Language::Dutch),
    ("no", Language::Norwegian),
    ("pt", Language::Portuguese),
    ("ro", Language::Romanian),
    ("sv", Language::Swedish),
];

/// The analyzer for languages without a stemmer.
pub const OTHER: &str = "other";

/// Every analyzer name: the stemmed ones, then [`OTHER`].
pub fn analyzer_names() -> impl Iterator<Item = &'static str> {
    STEMMED
        .iter()
        .map(|(n, _)| *n)
        .chain(std::iter::once(OTHER))
}

/// The analyzer (and field suffix) for text in ISO 639-1 language `lang`.
pub fn analyzer_for(lang: &str) -> &'static str {
    let lang = match lang {
        "nb" | "nn" => "no",
        other => other,
    };
    STEMMED
        .iter()
        .find(|(n, _)| *n == lang)
        .map(|(n, _)| *n)
        .unwrap_or(OTHER)
}

/// The tokenizer name registered for analyzer `name`.
pub fn tokenizer_name(name: &str) -> String {
    format!("hubcat_{name}")
}

/// Build the analyzer called `name` (one of [`analyzer_names`]).
pub fn analyzer(name: &str) -> TextAnalyzer {
    match STEMMED.iter().find(|(n, _)| *n == name) {
        Some((_, language)) => TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
            .filter(LowerCaser)
            .filter(Stemmer::new(*language))
            .filter(AsciiFoldingFilter)
            .build(),
        None => TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
            .filter(LowerCaser)
            .filter(AsciiFoldingFilter)
            .filter(Truncate(TRUNCATE_CHARS))
            .build(),
    }
}

/// The words of a query, split as every analyzer splits text (so word `i` is token `i` of
/// each analyzer).
pub fn words(text: &str) -> Vec<String> {
    let mut analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .build();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while let Some(token) = stream.next() {
        out.push(token.text.clone());
    }
    out
}

/// The terms `analyzer` makes of `text`.
pub fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while let Some(token) = stream.next() {
        out.push(token.text.clone());
    }
    out
}

/// Token filter keeping the first `n` characters of every token.
#[derive(Clone, Copy)]
pub struct Truncate(pub usize);

impl TokenFilter for Truncate {
    type Tokenizer<T: Tokenizer> = TruncateTokenizer<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> TruncateTokenizer<T> {
        TruncateTokenizer {
            chars: self.0,
            inner: tokenizer,
        }
    }
}

#[derive(Clone)]
pub struct TruncateTokenizer<T> {
    chars: usize,
    inner: T,
}

impl<T: Tokenizer> Tokenizer for TruncateTokenizer<T> {
    type TokenStream<'a> = TruncateStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        TruncateStream {
            chars: self.chars,
            tail: self.inner.token_stream(text),
        }
    }
}

pub struct TruncateStream<S> {
    chars: usize,
    tail: S,
}

impl<S: TokenStream> TokenStream for TruncateStream<S> {
    fn advance(&mut self) -> bool {
        if !self.tail.advance() {
            return false;
        }
        let chars = self.chars;
        let token = self.tail.token_mut();
        if let Some((cut, _)) = token.text.char_indices().nth(chars) {
            token.text.truncate(cut);
        }
        true
    }

    fn token(&self) -> &Token {
        self.tail.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.tail.token_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysed(name: &str, text: &str) -> Vec<String> {
        terms(&mut analyzer(name), text)
    }

    #[test]
    fn stemming_joins_inflected_forms() {
        assert_eq!(
            analysed("es", "laboratorios"),
            analysed("es", "laboratorio")
        );
        assert_eq!(analysed("en", "testing"), analysed("en", "tests"));
        assert_eq!(analysed("de", "Laboren"), analysed("de", "Labor"));
        // Greek: the stemmer strips accents and endings, but leaves the plural one letter
        // longer (υπηρεσι vs υπηρεσ); the query-side prefix lookup joins the two.
        let plural = analysed("el", "Υπηρεσίες");
        let singular = analysed("el", "υπηρεσία");
        assert!(
            plural[0].starts_with(singular[0].as_str()) && singular[0].chars().count() >= 5,
            "{plural:?} {singular:?}"
        );
    }

    #[test]
    fn the_fallback_folds_and_truncates() {
        assert_eq!(analysed(OTHER, "Zdrowia zdrowie"), vec!["zdrowi", "zdrowi"]);
        assert_eq!(analysed(OTHER, "Łódź"), vec!["lodz"]);
        assert_eq!(analysed(OTHER, "AI"), vec!["ai"]);
    }

    #[test]
    fn languages_map_to_analyzers() {
        assert_eq!(analyzer_for("sv"), "sv");
        assert_eq!(analyzer_for("nb"), "no");
        assert_eq!(analyzer_for("pl"), OTHER);
        assert_eq!(analyzer_names().count(), STEMMED.len() + 1);
        assert_eq!(
            words("AI-produkter, hälsodata!"),
            ["AI", "produkter", "hälsodata"]
        );
    }
}
