//! File and function length: a file over [`crate::MAX_FILE_LINES`] lines
//! must say why in its opening comment; no function may be over
//! [`crate::MAX_FUNCTION_LINES`] lines. Functions are found by `syn`
//! (free functions, methods, trait methods with a body, nested ones), so
//! a brace in a string or a comment cannot fool the count.

use syn::visit::Visit;

use crate::{Breach, MAX_FILE_LINES, MAX_FUNCTION_LINES};

/// The breach of the file-length rule by `text` (the file at `at`), if it
/// is one: over the limit, and its opening comment (the comment lines
/// before the first line of code) does not mention "600 lines".
pub fn long_file(at: &str, text: &str) -> Option<Breach> {
    let lines = text.lines().count();
    if lines <= MAX_FILE_LINES {
        return None;
    }
    let opening: String = text
        .lines()
        .map(str::trim_start)
        .take_while(|l| l.starts_with("//") || l.starts_with("#![") || l.is_empty())
        .filter_map(|l| l.strip_prefix("//"))
        .map(|l| l.trim_start_matches(['/', '!']).trim())
        .collect::<Vec<_>>()
        .join(" ");
    let says_why = opening
        .to_lowercase()
        .contains(&format!("{MAX_FILE_LINES} lines"));
    (!says_why).then(|| Breach {
        at: at.to_owned(),
        what: format!(
            "{lines} lines, over {MAX_FILE_LINES}, and its opening comment does not say why (\"Over {MAX_FILE_LINES} lines because …\"): split it by job, or say why it is one"
        ),
    })
}

/// The functions of `text` (the file at `at`) longer than the limit, each
/// a breach naming the function and its first line. A file that does not
/// parse is a breach of its own.
pub fn long_functions(at: &str, text: &str) -> Vec<Breach> {
    let file = match syn::parse_file(text) {
        Ok(file) => file,
        Err(e) => {
            return vec![Breach {
                at: at.to_owned(),
                what: format!("does not parse: {e}"),
            }];
        }
    };
    let mut finder = LongFunctions {
        at,
        found: Vec::new(),
    };
    finder.visit_file(&file);
    finder.found
}

struct LongFunctions<'a> {
    at: &'a str,
    found: Vec<Breach>,
}

impl LongFunctions<'_> {
    fn measure(&mut self, sig: &syn::Signature, block: &syn::Block) {
        let first = sig.fn_token.span.start().line;
        let last = block.brace_token.span.close().end().line;
        let lines = last + 1 - first;
        if lines > MAX_FUNCTION_LINES {
            self.found.push(Breach {
                at: format!("{}:{first}", self.at),
                what: format!(
                    "fn {} is {lines} lines, over {MAX_FUNCTION_LINES}",
                    sig.ident
                ),
            });
        }
    }
}

impl<'ast> Visit<'ast> for LongFunctions<'_> {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.measure(&f.sig, &f.block);
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.measure(&f.sig, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.measure(&f.sig, block);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(lines: usize, opening: &str) -> String {
        let mut text = opening.to_owned();
        while text.lines().count() < lines {
            text.push_str("const X: u8 = 0;\n");
        }
        text
    }

    #[test]
    fn a_long_file_must_say_why_in_its_opening_comment() {
        let cases = [
            (600, "//! Short enough.\n", false),
            (601, "//! Long, with no word on it.\n", true),
            (
                601,
                "//! Over 600 lines because one parser\n//! shares its state.\n",
                false,
            ),
            (601, "// Over 600 lines: the tables are one.\n", false),
            // A reason wrapped across lines still counts.
            (
                601,
                "//! The backend. Over 600\n//! lines because one impl.\n",
                false,
            ),
            // The reason must open the file, not hide further down.
            (
                601,
                "//! Long.\nconst Y: u8 = 1;\n// Over 600 lines because.\n",
                true,
            ),
        ];
        for (lines, opening, breach) in cases {
            let text = file_of(lines, opening);
            assert_eq!(
                long_file("f.rs", &text).is_some(),
                breach,
                "{lines} lines, {opening:?}"
            );
        }
    }

    fn function_of(lines: usize) -> String {
        // `fn` line + body lines + closing brace = `lines`.
        let body = "    let _ = \"}\"; // {\n".repeat(lines - 2);
        format!("fn long() {{\n{body}}}\n")
    }

    #[test]
    fn a_function_over_the_limit_is_named_with_its_line() {
        assert!(long_functions("f.rs", &function_of(150)).is_empty());
        let found = long_functions("f.rs", &format!("\n\n{}", function_of(151)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].at, "f.rs:3");
        assert_eq!(found[0].what, "fn long is 151 lines, over 150");
        let method = format!(
            "struct S;\nimpl S {{\n{}}}\ntrait T {{\n{}}}\n",
            function_of(151).replace("fn long", "fn method"),
            function_of(151).replace("fn long", "fn provided")
        );
        let names: Vec<String> = long_functions("f.rs", &method)
            .into_iter()
            .map(|b| b.what)
            .collect();
        assert_eq!(
            names,
            [
                "fn method is 151 lines, over 150",
                "fn provided is 151 lines, over 150"
            ]
        );
        assert!(
            long_functions("f.rs", "fn (")[0]
                .what
                .starts_with("does not parse")
        );
    }
}
