//! The search index: full text in every language, filters, facets and pagination over the
//! whole federated catalogue, derived from the catalogue's view and kept current with it.
//!
//! - [`analysis`]: language-aware analyzers (one text field per stemming language, a
//!   truncating fallback for the others);
//! - [`params`]: query parameters as the API takes them, validated into a [`SearchQuery`];
//! - [`insight`]: what is computed over the indexed records besides search — gap analysis,
//!   duplicate hubs, matchmaking.
//!
//! **Where the index lives: in RAM, rebuilt from the catalogue at every start.** The catalogue
//! view it derives from is itself rebuilt from the store at open, so an in-memory index can
//! never disagree with the store after a crash, needs no migration when the schema or the
//! analyzers change, and costs no disk writes (tantivy commits, fsyncs) on the ingest path.
//! The price is the rebuild at every start and the memory (each entry keeps a copy of the
//! record view beside the tantivy index); `hubcat-bench search` measures both at 10 000 and
//! 100 000 records (BENCHMARKS.md, "search": 9 000–16 000 records/s in release, ≈ 270 MiB at
//! 100 000 records). Should the rebuild
//! prove too slow for large federations, the same documents can go to an on-disk index under
//! the data directory with the catalogue digest as its commit payload, rebuilt only when the
//! digest differs. `hubcat reindex` rebuilds the index while the node runs.
//!
//! **Kept current.** The index tracks the catalogue's changed records
//! ([`Catalogue::track_changes`]): a background task applies them whenever a commit wakes it
//! ([`Catalogue::records_changed`]), and every query first applies whatever is still waiting,
//! so an answer always reflects every change applied before the query — local publish,
//! gossip or sync alike. Only records from the catalogue's view are indexed, so nothing
//! unsigned or unverified reaches an answer; each hit carries the record's provenance.
//!
//! **Documents.** Each record is one tantivy document: its text per language (title twice,
//! description, names, and the English labels of its vocabulary terms in `text_en`), filter
//! terms (kind, category, technology, sector, country, NUTS region prefixes, language,
//! maturity, practice type, publisher, open to twinning), and the time it was last confirmed.
//! A `u64` fast field points into the side table of entries (the record view and the values
//! facets count), so results and facets never touch tantivy's document store.

pub mod analysis;
pub mod insight;
pub mod params;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, Weak};

use hubcat_protocol::bundle::Provenance;
use hubcat_protocol::record::{parse_timestamp, LangMap};
use hubcat_protocol::{vocab, Record, RecordKind};
use serde::Serialize;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, EmptyQuery, Occur, Query, RangeQuery,
    TermQuery, TermSetQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STRING,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{
    DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentOrdinal, SegmentReader,
    TantivyDocument, Term,
};

use crate::engine::{Catalogue, RecordChanges, RecordView};

pub use params::{ParamError, SearchParams};

/// Memory tantivy's writer may buffer before it writes a segment.
const WRITER_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// Query words of at least this many characters also match as a prefix of indexed terms
/// (after stemming), so `hälsodata` finds `hälsodatan`, which the Swedish stemmer leaves
/// whole; shorter words would match too much.
const PREFIX_MIN_CHARS: usize = 5;
/// Weight of a prefix match next to an exact term match's BM25 score.
const PREFIX_BOOST: Score = 0.3;
/// Weight of the user's own language field.
const OWN_LANGUAGE_BOOST: Score = 2.0;
/// Share of query words a search hit must contain (rounded up; one-word queries need it).
const SEARCH_MIN_SHARE: f32 = 0.6;
/// The background updater gathers changes this long before it applies them: each time costs
/// a tantivy commit and reader reload — per change, more than indexing the record — and a node
/// receiving a stream of records would otherwise spend its CPU on commits (BENCHMARKS.md,
/// "network"). Queries apply whatever is waiting before they run, so this bounds only the
/// work a query may find left to do, never how current its answer is.
const UPDATE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// The largest page size.
pub const MAX_PER_PAGE: usize = 100;
/// Seconds in a day.
const DAY_SECS: i64 = 86_400;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index: {0}")]
    Internal(String),
}

/// What facets count, one kind per filterable vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum FacetKind {
    Category,
    Technology,
    Sector,
    Country,
    Maturity,
    PracticeType,
}

/// Facet values interned to small numbers, so counting a hit costs a few array increments.
#[derive(Default)]
struct FacetTable {
    values: Vec<(FacetKind, String)>,
    ids: HashMap<(FacetKind, String), u32>,
}

impl FacetTable {
    fn intern(&mut self, kind: FacetKind, value: &str) -> u32 {
        if let Some(id) = self.ids.get(&(kind, value.to_owned())) {
            return *id;
        }
        let id = self.values.len() as u32;
        self.values.push((kind, value.to_owned()));
        self.ids.insert((kind, value.to_owned()), id);
        id
    }
}

/// One indexed record: the view as the catalogue holds it, plus what filters, facets,
/// freshness and the analyses need, derived once.
#[derive(Debug, Clone)]
pub struct Entry {
    pub view: RecordView,
    /// Languages the record is written in or serves (ISO 639-1), sorted.
    pub languages: Vec<String>,
    /// Countries (ISO 3166-1) the record serves, regions counting for their country.
    pub countries: Vec<String>,
    /// NUTS codes the record names (profile regions, a service's area served).
    pub regions: Vec<String>,
    /// When the publisher last confirmed it, unix seconds.
    pub confirmed: i64,
    facets: Vec<u32>,
    /// Orders equal hits the same way whatever order the index was built in.
    tiebreak: u64,
}

impl Entry {
    pub fn record(&self) -> &Record {
        &self.view.record
    }
}

#[derive(Clone)]
struct Fields {
    ord: Field,
    id: Field,
    /// `(analyzer name, text field)`.
    text: Vec<(&'static str, Field)>,
    kind: Field,
    category: Field,
    technology: Field,
    sector: Field,
    country: Field,
    region: Field,
    language: Field,
    maturity: Field,
    practice_type: Field,
    publisher: Field,
    twinning: Field,
    confirmed: Field,
}

impl Fields {
    fn schema() -> (Schema, Fields) {
        let mut b = Schema::builder();
        let ord = b.add_u64_field("ord", FAST);
        let id = b.add_text_field("id", STRING);
        let text = analysis::analyzer_names()
            .map(|name| {
                let indexing = TextFieldIndexing::default()
                    .set_tokenizer(&analysis::tokenizer_name(name))
                    .set_index_option(IndexRecordOption::WithFreqs);
                let options = TextOptions::default().set_indexing_options(indexing);
                (name, b.add_text_field(&format!("text_{name}"), options))
            })
            .collect();
        let mut keyword = |name: &str| b.add_text_field(name, STRING);
        let fields = Fields {
            ord,
            id,
            text,
            kind: keyword("kind"),
            category: keyword("category"),
            technology: keyword("technology"),
            sector: keyword("sector"),
            country: keyword("country"),
            region: keyword("region"),
            language: keyword("language"),
            maturity: keyword("maturity"),
            practice_type: keyword("practice_type"),
            publisher: keyword("publisher"),
            twinning: keyword("open_to_twinning"),
            confirmed: b.add_i64_field("confirmed", INDEXED | FAST),
        };
        (b.build(), fields)
    }

    fn text_field(&self, analyzer: &str) -> Option<Field> {
        self.text
            .iter()
            .find(|(n, _)| *n == analyzer)
            .map(|(_, f)| *f)
    }
}

/// The index proper: tantivy's, the side table, and the facet values.
struct Inner {
    reader: IndexReader,
    writer: IndexWriter,
    fields: Fields,
    analyzers: Vec<(&'static str, TextAnalyzer)>,
    /// By ord: looked up for every hit of every query, so hashed with FxHash (ords are
    /// this index's own sequence numbers; nobody outside chooses them).
    entries: rustc_hash::FxHashMap<u64, Entry>,
    by_id: HashMap<String, u64>,
    /// Publisher did → ord of its profile.
    profiles: HashMap<String, u64>,
    next_ord: u64,
    facets: FacetTable,
}

impl Inner {
    fn new() -> Result<Inner, SearchError> {
        let (schema, fields) = Fields::schema();
        let index = Index::create_in_ram(schema);
        let mut analyzers = Vec::new();
        for name in analysis::analyzer_names() {
            let analyzer = analysis::analyzer(name);
            index
                .tokenizers()
                .register(&analysis::tokenizer_name(name), analyzer.clone());
            analyzers.push((name, analyzer));
        }
        let writer = index.writer_with_num_threads(1, WRITER_BUDGET_BYTES)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Inner {
            reader,
            writer,
            fields,
            analyzers,
            entries: rustc_hash::FxHashMap::default(),
            by_id: HashMap::new(),
            profiles: HashMap::new(),
            next_ord: 0,
            facets: FacetTable::default(),
        })
    }

    /// Apply upserts and withdrawals, then commit and make them visible to searchers.
    fn apply(&mut self, changes: RecordChanges) -> Result<(), SearchError> {
        if changes.is_empty() {
            return Ok(());
        }
        for id in &changes.removed {
            self.remove(id);
        }
        for view in changes.upserted {
            self.remove(&view.id);
            let ord = self.next_ord;
            self.next_ord += 1;
            let (doc, entry) = self.document(ord, view);
            self.writer.add_document(doc)?;
            if entry.view.kind == RecordKind::Profile {
                self.profiles.insert(entry.view.publisher.clone(), ord);
            }
            self.by_id.insert(entry.view.id.clone(), ord);
            self.entries.insert(ord, entry);
        }
        self.writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    fn remove(&mut self, id: &str) {
        // Every indexed document is in `by_id`: a record not there has nothing to delete.
        if let Some(ord) = self.by_id.remove(id) {
            self.writer
                .delete_term(Term::from_field_text(self.fields.id, id));
            if let Some(old) = self.entries.remove(&ord) {
                if self.profiles.get(&old.view.publisher) == Some(&ord) {
                    self.profiles.remove(&old.view.publisher);
                }
            }
        }
    }

    /// The tantivy document and side-table entry of one record.
    fn document(&mut self, ord: u64, view: RecordView) -> (TantivyDocument, Entry) {
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.ord, ord);
        doc.add_text(f.id, &view.id);
        doc.add_text(f.kind, view.kind.as_str());
        doc.add_text(f.publisher, &view.publisher);
        let record = &view.record;

        // Text, per analyzer.
        let mut text: BTreeMap<&'static str, String> = BTreeMap::new();
        let mut put = |lang: &str, s: &str| {
            let t = text.entry(analysis::analyzer_for(lang)).or_default();
            t.push_str(s);
            t.push('\n');
        };
        let (title, description) = texts(record);
        for (lang, s) in title {
            // Twice: a word in the title counts more than one in the description.
            put(lang, s);
            put(lang, s);
        }
        if let Some(description) = description {
            for (lang, s) in description {
                put(lang, s);
            }
        }
        let primary = title
            .keys()
            .find(|l| *l == "en")
            .or_else(|| title.keys().next())
            .cloned()
            .unwrap_or_else(|| "en".to_owned());
        for name in names(record) {
            put(&primary, name);
        }
        for label in labels(record) {
            put("en", label);
        }
        for (analyzer, s) in &text {
            if let Some(field) = f.text_field(analyzer) {
                doc.add_text(field, s);
            }
        }

        // Filters and facets.
        let mut facets = Vec::new();
        let mut facet = |doc: &mut TantivyDocument, field: Field, kind, value: &str| {
            doc.add_text(field, value);
            if let Some(kind) = kind {
                facets.push(self.facets.intern(kind, value));
            }
        };
        let (technologies, sectors) = terms_of(record);
        for t in technologies {
            facet(&mut doc, f.technology, Some(FacetKind::Technology), t);
        }
        for s in sectors {
            facet(&mut doc, f.sector, Some(FacetKind::Sector), s);
        }
        match record {
            Record::Service(s) => {
                facet(&mut doc, f.category, Some(FacetKind::Category), &s.category)
            }
            Record::Practice(p) => {
                facet(&mut doc, f.maturity, Some(FacetKind::Maturity), &p.maturity);
                facet(
                    &mut doc,
                    f.practice_type,
                    Some(FacetKind::PracticeType),
                    &p.practice_type,
                );
                if let Some(open) = p.open_to_twinning {
                    facet(
                        &mut doc,
                        f.twinning,
                        None,
                        if open { "true" } else { "false" },
                    );
                }
            }
            Record::Profile(_) => {}
        }
        let regions = regions_of(record);
        let mut countries = record.countries();
        countries.extend(
            regions
                .iter()
                .filter_map(|r| vocab::region_country(r).map(str::to_owned)),
        );
        countries.sort();
        countries.dedup();
        for c in &countries {
            facet(&mut doc, f.country, Some(FacetKind::Country), c);
        }
        let mut prefixes = HashSet::new();
        for r in &regions {
            for end in 3..=r.len() {
                if let Some(p) = r.get(..end) {
                    prefixes.insert(p.to_owned());
                }
            }
        }
        for p in &prefixes {
            doc.add_text(f.region, p);
        }
        let languages = languages_of(record);
        for l in &languages {
            doc.add_text(f.language, l);
        }
        let confirmed = confirmed_secs(&view);
        doc.add_i64(f.confirmed, confirmed);
        let tiebreak = {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            view.id.hash(&mut h);
            h.finish()
        };
        let entry = Entry {
            tiebreak,
            view,
            languages,
            countries,
            regions,
            confirmed,
            facets,
        };
        (doc, entry)
    }

    /// The text part of a query: each word looked up in every language field (stemmed by that
    /// field's analyzer, and as a prefix when long enough), `min_share` of the words required.
    fn text_query(
        &self,
        text: &str,
        user_lang: Option<&str>,
        min_share: f32,
    ) -> Option<Box<dyn Query>> {
        let mut seen_words = HashSet::new();
        let words: Vec<String> = analysis::words(text)
            .into_iter()
            .filter(|w| seen_words.insert(w.to_lowercase()))
            .collect();
        if words.is_empty() {
            return None;
        }
        let own = user_lang.map(analysis::analyzer_for);
        let searcher = self.reader.searcher();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(words.len());
        for word in &words {
            let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for (name, analyzer) in &self.analyzers {
                let Some(field) = self.fields.text_field(name) else {
                    continue;
                };
                let boost = if own == Some(*name) {
                    OWN_LANGUAGE_BOOST
                } else {
                    1.0
                };
                let mut analyzer = analyzer.clone();
                for term in analysis::terms(&mut analyzer, word) {
                    let t = Term::from_field_text(field, &term);
                    alternatives.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(
                            Box::new(TermQuery::new(t.clone(), IndexRecordOption::WithFreqs)),
                            boost,
                        )),
                    ));
                    if *name != analysis::OTHER && term.chars().count() >= PREFIX_MIN_CHARS {
                        // Every indexed term that starts with this one: the range of the term
                        // dictionary from it up to it followed by 0xFF (no UTF-8 byte) —
                        // asked only of fields that hold such a term (a word has terms in the
                        // fields of a few languages, and an empty range still costs a pass).
                        let mut upper = t.clone();
                        upper.append_bytes(&[0xFF]);
                        if !any_term_in(&searcher, field, &t, &upper) {
                            continue;
                        }
                        alternatives.push((
                            Occur::Should,
                            Box::new(BoostQuery::new(
                                Box::new(RangeQuery::new(
                                    std::ops::Bound::Included(t),
                                    std::ops::Bound::Excluded(upper),
                                )),
                                PREFIX_BOOST * boost,
                            )),
                        ));
                    }
                }
            }
            clauses.push((Occur::Should, Box::new(BooleanQuery::new(alternatives))));
        }
        let required = ((words.len() as f32) * min_share).ceil().max(1.0) as usize;
        Some(Box::new(BooleanQuery::with_minimum_required_clauses(
            clauses, required,
        )))
    }

    /// The whole query: text (scored) and filters (not scored).
    fn query(&self, q: &SearchQuery, now_secs: i64, stale_after_secs: i64) -> Box<dyn Query> {
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if let Some(text) = q.text.as_deref() {
            match self.text_query(text, q.lang.as_deref(), SEARCH_MIN_SHARE) {
                Some(t) => clauses.push((Occur::Must, t)),
                // Text that holds no word (only punctuation) matches nothing.
                None => return Box::new(EmptyQuery),
            }
        }
        let mut filter = |field: Field, values: &[String]| {
            if !values.is_empty() {
                clauses.push((Occur::Must, unscored(any_of(field, values))));
            }
        };
        let kinds: Vec<String> = q.kinds.iter().map(|k| k.as_str().to_owned()).collect();
        filter(f.kind, &kinds);
        filter(f.category, &q.categories);
        filter(f.technology, &q.technologies);
        filter(f.sector, &q.sectors);
        filter(f.country, &q.countries);
        filter(f.region, &q.regions);
        filter(f.language, &q.languages);
        filter(f.maturity, &q.maturities);
        filter(f.practice_type, &q.practice_types);
        filter(f.publisher, &q.publishers);
        if let Some(open) = q.open_to_twinning {
            filter(
                f.twinning,
                &[if open { "true" } else { "false" }.to_owned()],
            );
        }
        if !q.hub_types.is_empty() {
            let publishers: Vec<String> = self
                .profiles
                .values()
                .filter_map(|ord| self.entries.get(ord))
                .filter(|e| match e.record() {
                    Record::Profile(p) => q.hub_types.contains(&p.hub_type),
                    _ => false,
                })
                .map(|e| e.view.publisher.clone())
                .collect();
            if publishers.is_empty() {
                return Box::new(EmptyQuery);
            }
            filter(f.publisher, &publishers);
        }
        if let Some(fresh) = q.fresh {
            let threshold = Term::from_field_i64(f.confirmed, now_secs - stale_after_secs);
            let range = if fresh {
                RangeQuery::new(
                    std::ops::Bound::Included(threshold),
                    std::ops::Bound::Unbounded,
                )
            } else {
                RangeQuery::new(
                    std::ops::Bound::Unbounded,
                    std::ops::Bound::Excluded(threshold),
                )
            };
            clauses.push((Occur::Must, unscored(Box::new(range))));
        }
        if clauses.is_empty() {
            Box::new(AllQuery)
        } else {
            Box::new(BooleanQuery::new(clauses))
        }
    }

    /// Every document `query` matches: `(score, ord)`.
    fn hits(&self, query: &dyn Query, scoring: bool) -> Result<Vec<(Score, u64)>, SearchError> {
        let searcher = self.reader.searcher();
        Ok(searcher.search(query, &AllHits { scoring })?)
    }

    fn publisher_of(&self, did: &str) -> PublisherRef {
        let profile = self
            .profiles
            .get(did)
            .and_then(|ord| self.entries.get(ord))
            .and_then(|e| match e.record() {
                Record::Profile(p) => Some(p),
                _ => None,
            });
        PublisherRef {
            did: did.to_owned(),
            name: profile.map(|p| p.name.clone()),
            title: profile
                .map(|p| hubcat_protocol::record::pick_language(&p.title, None).to_owned()),
            country: profile.map(|p| p.country.clone()),
        }
    }
}

/// Does any segment of `searcher` hold a term of `field` in `[lower, upper)`?
fn any_term_in(searcher: &tantivy::Searcher, field: Field, lower: &Term, upper: &Term) -> bool {
    searcher.segment_readers().iter().any(|segment| {
        segment.inverted_index(field).is_ok_and(|index| {
            index
                .terms()
                .range()
                .ge(lower.serialized_value_bytes())
                .lt(upper.serialized_value_bytes())
                .into_stream()
                .is_ok_and(|mut terms| terms.advance())
        })
    })
}

/// A filter clause: contributes no score.
fn unscored(q: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(ConstScoreQuery::new(q, 0.0))
}

/// Documents with any of `values` in `field`.
fn any_of(field: Field, values: &[String]) -> Box<dyn Query> {
    match values {
        [one] => Box::new(TermQuery::new(
            Term::from_field_text(field, one),
            IndexRecordOption::Basic,
        )),
        many => Box::new(TermSetQuery::new(
            many.iter().map(|v| Term::from_field_text(field, v)),
        )),
    }
}

/// Collects every matching document as `(score, ord)`: pagination, ranking tiers and facets
/// are then computed over the whole hit list.
struct AllHits {
    scoring: bool,
}

struct SegmentHits {
    ords: Column<u64>,
    hits: Vec<(Score, u64)>,
}

impl Collector for AllHits {
    type Fruit = Vec<(Score, u64)>;
    type Child = SegmentHits;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentHits> {
        Ok(SegmentHits {
            ords: reader.fast_fields().u64("ord")?,
            hits: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scoring
    }

    fn merge_fruits(&self, fruits: Vec<Vec<(Score, u64)>>) -> tantivy::Result<Self::Fruit> {
        Ok(fruits.concat())
    }
}

impl SegmentCollector for SegmentHits {
    type Fruit = Vec<(Score, u64)>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if let Some(ord) = self.ords.first(doc) {
            self.hits.push((score, ord));
        }
    }

    fn harvest(self) -> Self::Fruit {
        self.hits
    }
}

/// A validated search (see [`params::SearchParams`]). Empty lists mean "any"; several values
/// in one list mean "any of them".
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub text: Option<String>,
    pub kinds: Vec<RecordKind>,
    pub categories: Vec<String>,
    pub technologies: Vec<String>,
    pub sectors: Vec<String>,
    /// ISO 3166-1 codes (Greece `GR`): records serving the country or a region in it.
    pub countries: Vec<String>,
    /// NUTS codes: records naming the region or one of its sub-regions.
    pub regions: Vec<String>,
    /// Records written in or serving one of these languages.
    pub languages: Vec<String>,
    pub maturities: Vec<String>,
    pub practice_types: Vec<String>,
    /// Hub types of the publisher's profile.
    pub hub_types: Vec<String>,
    /// Publisher dids.
    pub publishers: Vec<String>,
    pub open_to_twinning: Option<bool>,
    /// `Some(true)`: only records confirmed within the stale period; `Some(false)`: only
    /// stale ones.
    pub fresh: Option<bool>,
    /// The user's language: records in it rank first, titles are shown in it.
    pub lang: Option<String>,
    /// 1-based.
    pub page: usize,
    pub per_page: usize,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            text: None,
            kinds: Vec::new(),
            categories: Vec::new(),
            technologies: Vec::new(),
            sectors: Vec::new(),
            countries: Vec::new(),
            regions: Vec::new(),
            languages: Vec::new(),
            maturities: Vec::new(),
            practice_types: Vec::new(),
            hub_types: Vec::new(),
            publishers: Vec::new(),
            open_to_twinning: None,
            fresh: None,
            lang: None,
            page: 1,
            per_page: 20,
        }
    }
}

/// The hub that published a record, named from its profile when the catalogue holds it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PublisherRef {
    pub did: String,
    /// The profile's short name.
    pub name: Option<String>,
    pub title: Option<String>,
    pub country: Option<String>,
}

/// One search result with its proof of origin.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    /// `slot@z6Mk…`.
    pub id: String,
    pub kind: RecordKind,
    /// The title in the requested language, else English, else any.
    pub title: String,
    /// The language of `title`.
    pub title_language: Option<String>,
    pub publisher: PublisherRef,
    /// Text relevance (0 without a text query).
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub practice_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maturity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_type: Option<String>,
    pub countries: Vec<String>,
    pub languages: Vec<String>,
    pub modified: Option<String>,
    pub last_confirmed: Option<String>,
    /// Not confirmed by its publisher within `catalogue.stale_after_days`.
    pub stale: bool,
    /// Publisher, change hash, signature and signing time of the change that wrote it.
    pub provenance: Provenance,
}

/// How many hits carry a facet value.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FacetCount {
    pub value: String,
    /// English label of a vocabulary slug, the country's code otherwise.
    pub label: String,
    pub count: usize,
}

/// The facets, as the API names them: the fields of [`Facets`], in their order.
pub const FACET_NAMES: [&str; 6] = [
    "category",
    "technology",
    "sector",
    "country",
    "maturity",
    "practice_type",
];

/// Facet counts over every hit of a search (not only the page shown).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Facets {
    pub category: Vec<FacetCount>,
    pub technology: Vec<FacetCount>,
    pub sector: Vec<FacetCount>,
    pub country: Vec<FacetCount>,
    pub maturity: Vec<FacetCount>,
    pub practice_type: Vec<FacetCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    /// Hits over all pages.
    pub total: usize,
    pub page: usize,
    pub per_page: usize,
    pub pages: usize,
    pub results: Vec<SearchHit>,
    pub facets: Facets,
    /// Records last confirmed before this time are stale.
    pub stale_before: String,
}

/// The catalogue's search index (see the module doc).
pub struct SearchIndex {
    /// Weak: an index derived from the catalogue must not keep it (and the store's lock)
    /// alive after the node stops.
    catalogue: Weak<Catalogue>,
    stale_after_secs: i64,
    inner: RwLock<Inner>,
    /// Taking changes from the catalogue and applying them happen as one step, in order.
    refresh: Mutex<()>,
}

impl SearchIndex {
    /// Build the index from every record of `catalogue` and start tracking its changes.
    /// Blocking (seconds for 100 000 records): call it off the async runtime.
    pub fn open(catalogue: Arc<Catalogue>, stale_after_days: u64) -> Result<Self, SearchError> {
        let stale_after_secs = i64::try_from(stale_after_days)
            .unwrap_or(i64::MAX / DAY_SECS)
            .saturating_mul(DAY_SECS);
        let inner = Self::build(&catalogue)?;
        Ok(SearchIndex {
            catalogue: Arc::downgrade(&catalogue),
            stale_after_secs,
            inner: RwLock::new(inner),
            refresh: Mutex::new(()),
        })
    }

    fn build(catalogue: &Catalogue) -> Result<Inner, SearchError> {
        let mut inner = Inner::new()?;
        let all = catalogue.track_changes();
        inner.apply(RecordChanges {
            upserted: all,
            removed: Vec::new(),
        })?;
        Ok(inner)
    }

    /// Rebuild the index from the catalogue (`hubcat reindex`); queries keep being answered
    /// from the old index until the new one is ready. Returns the number of records indexed.
    pub fn rebuild(&self) -> Result<usize, SearchError> {
        let _order = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        let catalogue = self.catalogue()?;
        let fresh = Self::build(&catalogue)?;
        let count = fresh.entries.len();
        *self.write() = fresh;
        Ok(count)
    }

    /// Apply every change the catalogue made since the last refresh.
    pub fn refresh(&self) -> Result<(), SearchError> {
        let _order = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        // The node is stopping: nothing more to apply.
        let Some(catalogue) = self.catalogue.upgrade() else {
            return Ok(());
        };
        let changes = catalogue.take_changes();
        drop(catalogue);
        if changes.is_empty() {
            return Ok(());
        }
        self.write().apply(changes)
    }

    /// Keep the index current in the background: apply changes a moment after the catalogue
    /// reports some, so a stream of changes costs one tantivy commit per [`UPDATE_EVERY`]
    /// rather than one per change (queries apply what is left before they run, so answers are
    /// current regardless). Ends with the runtime.
    pub fn spawn_updater(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let index = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(catalogue) = index.upgrade().and_then(|i| i.catalogue.upgrade()) else {
                    break;
                };
                catalogue.records_changed().notified().await;
                drop(catalogue);
                tokio::time::sleep(UPDATE_EVERY).await;
                let Some(worker) = index.upgrade() else {
                    break;
                };
                match tokio::task::spawn_blocking(move || worker.refresh()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "updating the search index failed"),
                    Err(e) => tracing::error!(error = %e, "search index update task failed"),
                }
            }
        })
    }

    fn catalogue(&self) -> Result<Arc<Catalogue>, SearchError> {
        self.catalogue
            .upgrade()
            .ok_or_else(|| SearchError::Internal("the catalogue is closed".into()))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Every mutation of `Inner` completes or leaves the previous state usable.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Indexed records.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stale_after_secs(&self) -> i64 {
        self.stale_after_secs
    }

    fn is_stale(&self, confirmed: i64, now_secs: i64) -> bool {
        confirmed < now_secs.saturating_sub(self.stale_after_secs)
    }

    /// Run a search: ranked, paginated hits with facet counts over all of them.
    pub fn search(&self, q: &SearchQuery) -> Result<SearchResults, SearchError> {
        self.refresh()?;
        let now = hubcat_protocol::now_ms() / 1000;
        let inner = self.read();
        let query = inner.query(q, now, self.stale_after_secs);
        let hits = inner.hits(query.as_ref(), q.text.is_some())?;
        let total = hits.len();

        // One pass over every hit (one side-table lookup each): facet counts over all of them,
        // and what ranking needs — the user's language first, then score, then most recently
        // confirmed.
        let mut counts = vec![0usize; inner.facets.values.len()];
        let mut ranked: Vec<(bool, Score, i64, u64, u64)> = Vec::with_capacity(total);
        for (score, ord) in hits {
            let Some(e) = inner.entries.get(&ord) else {
                continue;
            };
            for id in &e.facets {
                if let Some(c) = counts.get_mut(*id as usize) {
                    *c += 1;
                }
            }
            let own = q
                .lang
                .as_ref()
                .is_some_and(|l| e.languages.iter().any(|x| x == l));
            ranked.push((own, score, e.confirmed, e.tiebreak, ord));
        }
        let facets = facets_of(&inner.facets, &counts);
        type Ranked = (bool, Score, i64, u64, u64);
        let order = |a: &Ranked, b: &Ranked| {
            b.0.cmp(&a.0)
                .then(b.1.total_cmp(&a.1))
                .then(b.2.cmp(&a.2))
                .then(a.3.cmp(&b.3))
                .then(a.4.cmp(&b.4))
        };
        let per_page = q.per_page.clamp(1, MAX_PER_PAGE);
        let page = q.page.max(1);
        let offset = (page - 1).saturating_mul(per_page);
        let end = offset.saturating_add(per_page).min(ranked.len());
        if end > 0 && end < ranked.len() {
            ranked.select_nth_unstable_by(end - 1, order);
            ranked.truncate(end);
        }
        ranked.sort_unstable_by(order);
        let results = ranked
            .iter()
            .skip(offset)
            .filter_map(|(_, score, _, _, ord)| {
                let e = inner.entries.get(ord)?;
                Some(self.hit(&inner, e, *score, q.lang.as_deref(), now))
            })
            .collect();
        Ok(SearchResults {
            total,
            page,
            per_page,
            pages: total.div_ceil(per_page),
            results,
            facets,
            stale_before: hubcat_protocol::record::format_timestamp(
                now.saturating_sub(self.stale_after_secs)
                    .saturating_mul(1000),
            ),
        })
    }

    fn hit(
        &self,
        inner: &Inner,
        e: &Entry,
        score: Score,
        lang: Option<&str>,
        now: i64,
    ) -> SearchHit {
        let record = e.record();
        let (title_map, _) = texts(record);
        let title_language = lang
            .filter(|l| title_map.contains_key(*l))
            .map(str::to_owned)
            .or_else(|| title_map.contains_key("en").then(|| "en".to_owned()))
            .or_else(|| title_map.keys().next().cloned());
        let meta = record.meta();
        SearchHit {
            id: e.view.id.clone(),
            kind: e.view.kind,
            title: record.title(lang).to_owned(),
            title_language,
            publisher: inner.publisher_of(&e.view.publisher),
            score,
            category: record.category().map(str::to_owned),
            practice_type: match record {
                Record::Practice(p) => Some(p.practice_type.clone()),
                _ => None,
            },
            maturity: match record {
                Record::Practice(p) => Some(p.maturity.clone()),
                _ => None,
            },
            hub_type: match record {
                Record::Profile(p) => Some(p.hub_type.clone()),
                _ => None,
            },
            countries: e.countries.clone(),
            languages: e.languages.clone(),
            modified: meta.modified.clone(),
            last_confirmed: meta.last_confirmed.clone(),
            stale: self.is_stale(e.confirmed, now),
            provenance: e.view.provenance.clone(),
        }
    }
}

fn facets_of(table: &FacetTable, counts: &[usize]) -> Facets {
    let mut by_kind: BTreeMap<FacetKind, Vec<FacetCount>> = BTreeMap::new();
    for (id, count) in counts.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        let Some((kind, value)) = table.values.get(id) else {
            continue;
        };
        let label = match kind {
            FacetKind::Category => vocab::CATEGORIES.label(value),
            FacetKind::Technology => vocab::TECHNOLOGIES.label(value),
            FacetKind::Sector => vocab::SECTORS.label(value),
            FacetKind::Maturity => vocab::MATURITY.label(value),
            FacetKind::PracticeType => vocab::PRACTICE_TYPES.label(value),
            FacetKind::Country => value.as_str(),
        };
        by_kind.entry(*kind).or_default().push(FacetCount {
            value: value.clone(),
            label: label.to_owned(),
            count: *count,
        });
    }
    let mut take = |k: FacetKind| {
        let mut v = by_kind.remove(&k).unwrap_or_default();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        v
    };
    Facets {
        category: take(FacetKind::Category),
        technology: take(FacetKind::Technology),
        sector: take(FacetKind::Sector),
        country: take(FacetKind::Country),
        maturity: take(FacetKind::Maturity),
        practice_type: take(FacetKind::PracticeType),
    }
}

/// A record's title and description language maps.
fn texts(record: &Record) -> (&LangMap, Option<&LangMap>) {
    match record {
        Record::Profile(p) => (&p.title, Some(&p.description)),
        Record::Service(s) => (&s.title, Some(&s.description)),
        Record::Practice(p) => (&p.title, Some(&p.description)),
    }
}

/// Names in a record that belong to no language: the hub's short name and partners, a
/// practice's owner.
fn names(record: &Record) -> Vec<&str> {
    match record {
        Record::Profile(p) => std::iter::once(p.name.as_str())
            .chain(p.partners.iter().map(String::as_str))
            .collect(),
        Record::Practice(p) => p.owner.as_deref().into_iter().collect(),
        Record::Service(_) => Vec::new(),
    }
}

/// English labels of a record's vocabulary terms (so "artificial intelligence" finds records
/// tagged with it even when their text says "AI").
fn labels(record: &Record) -> Vec<&'static str> {
    let (technologies, sectors) = terms_of(record);
    let mut out: Vec<&'static str> = Vec::new();
    let mut add = |v: &'static vocab::Vocabulary, slug: &str| {
        if let Some((_, label)) = v.terms.iter().find(|(s, _)| *s == slug) {
            out.push(*label);
        }
    };
    for t in technologies {
        add(&vocab::TECHNOLOGIES, t);
    }
    for s in sectors {
        add(&vocab::SECTORS, s);
    }
    match record {
        Record::Service(s) => add(&vocab::CATEGORIES, &s.category),
        Record::Practice(p) => add(&vocab::PRACTICE_TYPES, &p.practice_type),
        Record::Profile(p) => add(&vocab::HUB_TYPES, &p.hub_type),
    }
    out
}

/// A record's technology and sector slugs.
pub(crate) fn terms_of(record: &Record) -> (Vec<&str>, Vec<&str>) {
    let (t, s) = match record {
        Record::Profile(p) => (&p.technologies, &p.sectors),
        Record::Service(s) => (&s.technologies, &s.sectors),
        Record::Practice(_) => return (Vec::new(), Vec::new()),
    };
    (
        t.iter().map(|x| x.slug()).collect(),
        s.iter().map(|x| x.slug()).collect(),
    )
}

/// NUTS codes a record names (country codes in an area served are not regions).
fn regions_of(record: &Record) -> Vec<String> {
    let codes: &[String] = match record {
        Record::Profile(p) => &p.regions,
        Record::Service(s) => &s.area_served,
        Record::Practice(_) => &[],
    };
    codes
        .iter()
        .filter(|c| c.len() > 2 && vocab::is_region(c))
        .cloned()
        .collect()
}

/// Languages a record is written in or serves.
fn languages_of(record: &Record) -> Vec<String> {
    let (title, description) = texts(record);
    let mut out: Vec<String> = title.keys().cloned().collect();
    if let Some(d) = description {
        out.extend(d.keys().cloned());
    }
    match record {
        Record::Profile(p) => {
            out.extend(p.languages.iter().cloned());
            if let Some(fd) = &p.front_desk {
                out.extend(fd.languages.iter().cloned());
            }
        }
        Record::Service(s) => out.extend(s.languages.iter().cloned()),
        Record::Practice(p) => out.extend(p.languages.iter().cloned()),
    }
    out.sort();
    out.dedup();
    out
}

/// When a record was last confirmed, unix seconds: `last_confirmed`, else `modified`, else
/// when its change was signed.
fn confirmed_secs(view: &RecordView) -> i64 {
    let meta = view.record.meta();
    [
        meta.last_confirmed.as_deref(),
        meta.modified.as_deref(),
        Some(view.provenance.signed_at.as_str()),
    ]
    .into_iter()
    .flatten()
    .find_map(|t| parse_timestamp(t).ok())
    .map(|t| t.unix_timestamp())
    .unwrap_or(0)
}
