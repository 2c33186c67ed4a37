//! A choice's spellings, written once: [`spellings!`](crate::spellings) declares, for an enum,
//! each variant's spellings (the first is its name; the rest are accepted aliases) and gives
//! the enum its `Display` (the name), `ALL` (the variants in order), `SPELLINGS` (the names in
//! order: what `--help` and the refusal messages list) and `from_spelling` (any spelling,
//! case-insensitive, `-` and `_` alike). Each crate's `FromStr` turns a `None` into its own error with [`unknown`].

/// The form spellings are compared in: lower case, `_` read as `-`.
pub fn normalise(s: &str) -> String {
    s.to_ascii_lowercase().replace('_', "-")
}

/// `unknown <what> `<given>`; use a, b or c` (the names of `spellings`).
pub fn unknown(what: &str, given: &str, spellings: &[&str]) -> String {
    let list = match spellings {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    };
    format!("unknown {what} `{given}`; use {list}")
}

/// Declares an enum's spellings (module docs):
///
/// ```ignore
/// spellings!(Precision { F32 => ["f32", "float32"], F64 => ["f64", "float64"] });
/// ```
#[macro_export]
macro_rules! spellings {
    ($t:ident { $($v:ident => [$name:literal $(, $alias:literal)*]),+ $(,)? }) => {
        impl $t {
            /// Each variant's name, in declaration order.
            pub const SPELLINGS: &'static [&'static str] = &[$($name),+];

            /// Each variant, in declaration order.
            pub const ALL: &'static [Self] = &[$($t::$v),+];

            /// The variant `s` spells (a name or an alias; case-insensitive, `-` and `_`
            /// alike), if any.
            pub fn from_spelling(s: &str) -> ::core::option::Option<Self> {
                let key = $crate::spelling::normalise(s);
                $(
                    if [$name $(, $alias)*]
                        .iter()
                        .any(|c| $crate::spelling::normalise(c) == key)
                    {
                        return ::core::option::Option::Some($t::$v);
                    }
                )+
                ::core::option::Option::None
            }
        }

        impl ::core::fmt::Display for $t {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(match self {
                    $($t::$v => $name),+
                })
            }
        }
    };
}
