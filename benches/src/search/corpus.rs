//! The generated corpus: a seeded, Zipf-distributed vocabulary of English-ish words and names,
//! people who are members of a few dozen conversations, and messages produced a batch at a time
//! (the same seed gives the same messages, so both engines index identical text without the
//! corpus being held in memory).

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Real words at the top of the frequency ranking, so that common queries look like chat.
const COMMON: &[&str] = &[
    "the", "to", "and", "a", "i", "you", "it", "is", "of", "for", "that", "in", "on", "we", "this",
    "be", "can", "have", "with", "just", "will", "not", "at", "so", "do", "are", "but", "if", "me",
    "what", "my", "was", "get", "now", "all", "think", "about", "know", "there", "yes", "ok",
    "thanks", "meeting", "today", "tomorrow", "please", "deploy", "release", "team", "update",
    "review", "build", "server", "issue", "check", "time", "work", "need", "looks", "good",
    "morning", "lunch", "call", "later", "week", "project", "test", "fix", "branch", "change",
    "problem", "customer", "report", "design", "plan", "question", "answer", "status", "friday",
    "monday", "office", "coffee", "weekend", "ticket", "merge", "launch", "budget",
];

/// Names mixed into the vocabulary (people mention each other).
const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yusuf", "zoe",
    "amara", "bruno", "chen", "dmitri", "esther", "farid", "greta", "hiro", "ingrid", "jamal",
    "kenji", "lucia", "mateo", "nadia", "oskar", "priya", "quentin", "rosa", "sanjay", "tamsin",
    "ugo", "vera", "wen", "ximena", "yara", "zeke",
];

const ONSETS: &[&str] = &[
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br",
    "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr", "ch",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ea", "io", "ou"];
const CODAS: &[&str] = &["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck", "ng"];

/// Sizes of the corpus.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub messages: u64,
    pub conversations: usize,
    pub people: usize,
    pub vocabulary: usize,
    pub seed: u64,
}

/// One generated message.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub conversation: usize,
    pub seq: u64,
    pub author: usize,
    pub ts: i64,
    pub body: String,
}

/// The vocabulary, people and memberships, and the message generator's state.
pub struct Corpus {
    pub shape: Shape,
    /// Words by rank, most frequent first.
    pub words: Vec<String>,
    /// Cumulative Zipf weights over `words` (the last is the total).
    cumulative: Vec<f64>,
    /// Each person's conversations.
    pub memberships: Vec<Vec<usize>>,
    /// Each conversation's members.
    members: Vec<Vec<usize>>,
    seqs: Vec<u64>,
    next: u64,
    rng: StdRng,
}

/// Conversations a person belongs to: between these bounds, uniformly.
const MEMBERSHIPS: (usize, usize) = (10, 50);

/// Zipf exponent of word frequencies (natural language is close to 1).
const ZIPF_S: f64 = 1.0;

/// Start of the messages' timestamps (Dec 1 2026, Unix ms); one message per 100 ms.
const FIRST_TS: i64 = 1_795_996_800_000;

impl Corpus {
    pub fn new(shape: Shape) -> Corpus {
        let mut rng = StdRng::seed_from_u64(shape.seed);
        let words = vocabulary(&mut rng, shape.vocabulary);
        let mut total = 0.0;
        let cumulative = (1..=words.len())
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(ZIPF_S);
                total
            })
            .collect();
        let conversations = shape.conversations.max(1);
        let mut members = vec![Vec::new(); conversations];
        let memberships: Vec<Vec<usize>> = (0..shape.people)
            .map(|person| {
                let wanted = rng
                    .random_range(MEMBERSHIPS.0..=MEMBERSHIPS.1)
                    .min(conversations);
                let mut mine = HashSet::with_capacity(wanted);
                while mine.len() < wanted {
                    mine.insert(rng.random_range(0..conversations));
                }
                let mut mine: Vec<usize> = mine.into_iter().collect();
                mine.sort_unstable();
                for &c in &mine {
                    members[c].push(person);
                }
                mine
            })
            .collect();
        Corpus {
            seqs: vec![0; conversations],
            shape,
            words,
            cumulative,
            memberships,
            members,
            next: 0,
            rng,
        }
    }

    /// A word drawn by its Zipf frequency.
    fn word(&mut self) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let at = self.rng.random::<f64>() * total;
        let rank = self.cumulative.partition_point(|&c| c < at);
        &self.words[rank.min(self.words.len() - 1)]
    }

    /// Words in a message: mostly 5–40, a long tail to 200.
    fn length(&mut self) -> usize {
        if self.rng.random_bool(0.9) {
            return self.rng.random_range(5..=40);
        }
        let tail: f64 = self.rng.random::<f64>().powi(3);
        41 + (tail * 159.0) as usize
    }

    /// The next `n` messages (fewer at the end of the corpus).
    pub fn batch(&mut self, n: usize) -> Vec<Message> {
        let left = self.shape.messages.saturating_sub(self.next);
        let n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
        (0..n).map(|_| self.message()).collect()
    }

    fn message(&mut self) -> Message {
        let conversation = self.rng.random_range(0..self.seqs.len());
        let members = &self.members[conversation];
        let author = if members.is_empty() {
            conversation % self.shape.people.max(1)
        } else {
            members[self.rng.random_range(0..members.len())]
        };
        let length = self.length();
        let mut body = String::with_capacity(length * 7);
        for i in 0..length {
            if i > 0 {
                body.push(' ');
            }
            let word = self.word().to_owned();
            body.push_str(&word);
        }
        self.seqs[conversation] += 1;
        let index = self.next;
        self.next += 1;
        Message {
            id: format!("m{index}"),
            conversation,
            seq: self.seqs[conversation],
            author,
            ts: FIRST_TS + i64::try_from(index).unwrap_or(i64::MAX / 200) * 100,
            body,
        }
    }
}

/// `size` distinct words: the common words first, names spread through the upper ranks, then
/// syllable-built words.
fn vocabulary(rng: &mut StdRng, size: usize) -> Vec<String> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut words: Vec<String> = Vec::with_capacity(size);
    let mut push = |word: String, words: &mut Vec<String>| {
        if seen.insert(word.clone()) {
            words.push(word);
        }
    };
    for word in COMMON {
        push((*word).to_owned(), &mut words);
    }
    let mut names = NAMES.iter();
    while words.len() < size {
        // A name every 40 ranks until they run out.
        if words.len().is_multiple_of(40)
            && let Some(name) = names.next()
        {
            push((*name).to_owned(), &mut words);
            continue;
        }
        let syllables = rng.random_range(1..=3);
        let mut word = String::new();
        for _ in 0..syllables {
            word.push_str(ONSETS[rng.random_range(0..ONSETS.len())]);
            word.push_str(VOWELS[rng.random_range(0..VOWELS.len())]);
        }
        word.push_str(CODAS[rng.random_range(0..CODAS.len())]);
        push(word, &mut words);
    }
    words.truncate(size);
    words
}
