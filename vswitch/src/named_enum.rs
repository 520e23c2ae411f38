//! Fieldless enums whose variants each carry a stable snake_case name, with
//! `ALL`, `COUNT`, `as_str` and `index` generated from the one variant list:
//! a counter array sized by `COUNT` and indexed by `index` cannot leave a
//! variant out or share a slot between two.

/// Defines the enum. Each variant is written `Variant => "name"`, with its
/// doc comment in front.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration (and index) order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Number of variants.
            pub const COUNT: usize = Self::ALL.len();

            /// The stable snake_case name (counters, metrics, JSON).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Position in [`Self::ALL`].
            #[inline(always)]
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// As [`named_enum!`], each variant also carrying a constant of type
/// `$meta` (how it is shown, exported, aggregated): `Variant => "name",
/// META`. [`meta`](#) returns it; a variant without one does not compile.
macro_rules! named_enum_with {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $mty:ty {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, $m:expr ),+ $(,)?
        }
    ) => {
        $crate::named_enum::named_enum! {
            $(#[$meta])*
            $vis enum $name {
                $( $(#[$vmeta])* $variant => $text ),+
            }
        }

        impl $name {
            /// What the declaration says of this variant besides its name.
            pub const fn meta(self) -> $mty {
                match self {
                    $($name::$variant => $m),+
                }
            }
        }
    };
}

pub(crate) use named_enum;
pub(crate) use named_enum_with;

#[cfg(test)]
mod tests {
    named_enum! {
        enum Colour {
            Red => "red",
            Green => "green",
        }
    }

    #[test]
    fn all_count_names_and_indexes_agree() {
        assert_eq!(Colour::COUNT, 2);
        for (i, c) in Colour::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        assert_eq!(Colour::Green.as_str(), "green");
        assert_eq!(Colour::Red.to_string(), "red");
    }
}
