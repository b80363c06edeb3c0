//! `confab.example.toml` and the README's configuration table, rendered from [`Config`]'s clap
//! metadata (doc comment, flag, variable, default, section), so they cannot drift from it: the
//! tests below compare the files with the rendering, and `confab config --print-example` /
//! `--print-table` print it to regenerate them.

use clap::{Arg, Args, Command};

use super::Config;

/// Width of the example file's comment lines.
const WIDTH: usize = 100;

/// One key of [`Config`], as its clap declaration describes it.
struct Key {
    name: String,
    flag: String,
    env: String,
    default: Option<String>,
    /// The doc comment: one string per paragraph, each ending with a full stop.
    paragraphs: Vec<String>,
    heading: String,
    value_name: String,
}

impl Key {
    fn from_arg(arg: &Arg) -> Key {
        let text = |styled: Option<&clap::builder::StyledStr>| styled.map(ToString::to_string);
        let doc = text(arg.get_long_help())
            .or_else(|| text(arg.get_help()))
            .unwrap_or_default();
        let mut paragraphs: Vec<String> = doc
            .split("\n\n")
            .map(|paragraph| {
                let paragraph = paragraph.trim();
                // Clap drops the full stop of a one-sentence help.
                match paragraph.ends_with('.') {
                    true => paragraph.to_owned(),
                    false => format!("{paragraph}."),
                }
            })
            .collect();
        let choices: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|value| format!("`{}`", value.get_name()))
            .collect();
        if !choices.is_empty() {
            let last = paragraphs.first_mut().expect("split yields a paragraph");
            last.push_str(&format!(" One of {}.", choices.join(", ")));
        }
        Key {
            name: arg.get_id().to_string(),
            flag: arg
                .get_long()
                .map(|long| format!("--{long}"))
                .unwrap_or_default(),
            env: arg
                .get_env()
                .map(|env| env.to_string_lossy().into_owned())
                .unwrap_or_default(),
            default: arg
                .get_default_values()
                .first()
                .map(|value| value.to_string_lossy().into_owned()),
            paragraphs,
            heading: arg.get_help_heading().unwrap_or("Other").to_owned(),
            value_name: arg
                .get_value_names()
                .and_then(|names| names.first())
                .map(ToString::to_string)
                .unwrap_or_default(),
        }
    }
}

/// The keys in declaration order.
fn keys() -> Vec<Key> {
    Config::augment_args(Command::new("confab serve"))
        .get_arguments()
        .map(Key::from_arg)
        .collect()
}

/// A value as TOML writes it: numbers and booleans bare, everything else a string.
fn toml_value(text: &str) -> String {
    if text.parse::<i64>().is_ok() || text.parse::<bool>().is_ok() {
        return text.to_owned();
    }
    toml::Value::String(text.to_owned()).to_string()
}

/// `text` as `# ` comment lines of at most [`WIDTH`] characters.
fn comment(text: &str, out: &mut String) {
    let mut line = String::from("#");
    let mut width = 1;
    for word in text.split_whitespace() {
        let word_width = word.chars().count();
        if width + 1 + word_width > WIDTH && width > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
            width = 1;
        }
        line.push(' ');
        line.push_str(word);
        width += 1 + word_width;
    }
    out.push_str(&line);
    out.push('\n');
}

const EXAMPLE_HEADER: &str = "\
Example Confab configuration: every key of `confab serve`, with its default. Pass the file \
with `--config FILE` or CONFAB_CONFIG. CONFAB_* variables (the key upper-cased, e.g. \
CONFAB_MESSAGE_RATE_PER_MINUTE) and flags (the key with dashes, e.g. --message-rate-per-minute) \
override it. Durations take a unit: \"25s\", \"100ms\", \"1m\".";

const GENERATED_NOTE: &str = "\
Rendered from server/src/config/mod.rs by `cargo run -p confab-server -- config \
--print-example`; a unit test fails when this file differs.";

/// `confab.example.toml`: every key with its doc comment and default, grouped by section.
pub fn example_toml() -> String {
    let mut out = String::new();
    comment(EXAMPLE_HEADER, &mut out);
    out.push_str("#\n");
    comment(GENERATED_NOTE, &mut out);
    let mut heading = String::new();
    for key in keys() {
        if key.heading != heading {
            heading = key.heading.clone();
            out.push_str(&format!("\n# ---- {heading} ----\n"));
        }
        out.push('\n');
        for (at, paragraph) in key.paragraphs.iter().enumerate() {
            if at > 0 {
                out.push_str("#\n");
            }
            comment(paragraph, &mut out);
        }
        match &key.default {
            Some(default) => out.push_str(&format!("{} = {}\n", key.name, toml_value(default))),
            None => out.push_str(&format!("# {} = \"<{}>\"\n", key.name, key.value_name)),
        }
    }
    out
}

/// The README's configuration table (Markdown), one row per key.
pub fn readme_table() -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    let mut out = String::from("| key | flag, variable | default | meaning |\n|---|---|---|---|\n");
    for key in keys() {
        let default = key
            .default
            .as_deref()
            .map(|value| format!("`{value}`"))
            .unwrap_or_default();
        out.push_str(&format!(
            "| `{}` | `{}`, `{}` | {} | {} |\n",
            key.name,
            key.flag,
            key.env,
            cell(&default),
            cell(&key.paragraphs.join(" "))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::layers::flag_of;
    use crate::config::{ServeArgs, layers};

    /// The lines that open and close the generated table in README.md.
    const TABLE_START: &str =
        "<!-- config-table: rendered by `confab config --print-table`; a unit test compares -->";
    const TABLE_END: &str = "<!-- /config-table -->";

    fn repo_file(name: &str) -> (PathBuf, String) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        (path, text)
    }

    #[test]
    fn every_key_is_spelled_one_way_and_documented() {
        for arg in layers::config_command().get_arguments() {
            let key = arg.get_id().as_str();
            assert_eq!(
                arg.get_long().map(|long| format!("--{long}")),
                Some(flag_of(key)),
                "{key}"
            );
            assert!(arg.get_help().is_some(), "{key} has no doc comment");
            assert!(
                arg.get_help_heading().is_some(),
                "{key} has no help_heading"
            );
        }
        for key in keys() {
            assert_eq!(key.env, format!("CONFAB_{}", key.name.to_uppercase()));
        }
    }

    #[test]
    fn the_example_config_is_the_rendering() {
        let (path, text) = repo_file("confab.example.toml");
        assert!(
            text == example_toml(),
            "{} differs from the rendering of Config; regenerate it with\n  \
             cargo run -p confab-server -- config --print-example > confab.example.toml",
            path.display()
        );
    }

    #[test]
    fn the_example_config_resolves_to_the_defaults() {
        let (path, _) = repo_file("confab.example.toml");
        let args =
            ServeArgs::try_parse_from(["--config".into(), path.into_os_string()]).expect("parse");
        let (config, deprecations) = Config::load(args).expect("the example resolves");
        assert_eq!(config, Config::default());
        assert!(deprecations.is_empty(), "{deprecations:?}");
    }

    #[test]
    fn the_readme_table_is_the_rendering() {
        let (path, text) = repo_file("README.md");
        let table = text
            .split_once(&format!("{TABLE_START}\n"))
            .and_then(|(_, rest)| rest.split_once(TABLE_END))
            .map(|(table, _)| table)
            .unwrap_or_else(|| panic!("{} has no {TABLE_START} … {TABLE_END}", path.display()));
        assert!(
            table == readme_table(),
            "the configuration table in {} differs from the rendering of Config; replace it \
             with the output of\n  cargo run -p confab-server -- config --print-table",
            path.display()
        );
    }

    #[test]
    fn comments_wrap_at_the_width() {
        let mut out = String::new();
        comment(&"word ".repeat(60), &mut out);
        assert!(
            out.lines().all(|line| line.chars().count() <= WIDTH),
            "{out}"
        );
        let example = example_toml();
        let long = example.lines().find(|line| line.chars().count() > WIDTH);
        assert!(long.is_none(), "{long:?}");
        assert!(out.lines().count() > 1);
    }
}
