//! The translation backends behind one trait, and the language codes they share.

/// A translated piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// The translation, without Apertium's unknown-word marks.
    pub text: String,
    /// Words the backend marked as unknown (Apertium's `*`, `@`, `#`); 0 for HTTP backends.
    pub unknown: u32,
    /// Words in the translation.
    pub words: u32,
}

/// Why a piece was not translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The backend failed for this piece after its retries (the message says how).
    Backend(String),
    /// The HTTP circuit breaker is open: nothing was sent.
    CircuitOpen,
}

impl Failure {
    /// The counter name of the failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Backend(_) => "backend_error",
            Failure::CircuitOpen => "circuit_open",
        }
    }
}

/// A machine translation system.
pub trait Translator: Send + Sync + std::fmt::Debug {
    /// `apertium`, `openai` or `libretranslate`.
    fn name(&self) -> &'static str;
    /// The model (or Apertium's language pair packages) recorded with each augmentation and in the cache key.
    fn model(&self) -> String;
    /// Whether it can translate from `from` to `to` (two-letter codes as `langid` writes them).
    fn supports(&self, from: &str, to: &str) -> bool;
    /// Translates `texts` (single lines) from `from` to `to`; one answer per text, in order.
    fn translate(&self, from: &str, to: &str, texts: &[&str]) -> Vec<Result<Translated, Failure>>;
    /// Counts of the backend's own events (retries, breaker trips), taken once.
    fn take_counters(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// Two-letter code, Apertium's three-letter code, English name.
#[rustfmt::skip]
pub const LANGUAGES: &[(&str, &str, &str)] = &[
    ("af", "afr", "Afrikaans"), ("an", "arg", "Aragonese"), ("ar", "ara", "Arabic"), ("ast", "ast", "Asturian"),
    ("be", "bel", "Belarusian"), ("bg", "bul", "Bulgarian"), ("br", "bre", "Breton"), ("ca", "cat", "Catalan"),
    ("cs", "ces", "Czech"), ("cy", "cym", "Welsh"), ("da", "dan", "Danish"), ("de", "deu", "German"),
    ("el", "ell", "Greek"), ("en", "eng", "English"), ("eo", "epo", "Esperanto"), ("es", "spa", "Spanish"),
    ("et", "est", "Estonian"), ("eu", "eus", "Basque"), ("fa", "fas", "Persian"), ("fi", "fin", "Finnish"),
    ("fr", "fra", "French"), ("ga", "gle", "Irish"), ("gl", "glg", "Galician"), ("he", "heb", "Hebrew"),
    ("hi", "hin", "Hindi"), ("hr", "hbs", "Croatian"), ("hu", "hun", "Hungarian"), ("id", "ind", "Indonesian"),
    ("is", "isl", "Icelandic"), ("it", "ita", "Italian"), ("ja", "jpn", "Japanese"), ("kk", "kaz", "Kazakh"),
    ("ko", "kor", "Korean"), ("lt", "lit", "Lithuanian"), ("lv", "lav", "Latvian"), ("mk", "mkd", "Macedonian"),
    ("ms", "msa", "Malay"), ("mt", "mlt", "Maltese"), ("nb", "nob", "Norwegian Bokmål"), ("nl", "nld", "Dutch"),
    ("nn", "nno", "Norwegian Nynorsk"), ("no", "nob", "Norwegian"), ("oc", "oci", "Occitan"), ("pl", "pol", "Polish"),
    ("pt", "por", "Portuguese"), ("ro", "ron", "Romanian"), ("ru", "rus", "Russian"), ("sk", "slk", "Slovak"),
    ("sl", "slv", "Slovenian"), ("sq", "sqi", "Albanian"), ("sr", "srp", "Serbian"), ("sv", "swe", "Swedish"),
    ("tr", "tur", "Turkish"), ("uk", "ukr", "Ukrainian"), ("ur", "urd", "Urdu"), ("vi", "vie", "Vietnamese"),
    ("zh", "zho", "Chinese"),
];

/// Apertium's code of a language (`en` -> `eng`); a three-letter code is returned as it is.
pub fn apertium_code(lang: &str) -> Option<&'static str> {
    LANGUAGES.iter().find(|(two, three, _)| *two == lang || *three == lang).map(|(_, three, _)| *three)
}

/// The English name of a language, for prompts (the code itself when unknown).
pub fn language_name(lang: &str) -> &str {
    LANGUAGES.iter().find(|(two, three, _)| *two == lang || *three == lang).map_or(lang, |(_, _, name)| name)
}

/// Words in a text: whitespace-separated tokens with a letter or digit.
pub fn count_words(text: &str) -> u32 {
    text.split_whitespace().filter(|w| w.chars().any(char::is_alphanumeric)).count() as u32
}
