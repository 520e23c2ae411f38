//! Walking the set bits of a burst mask.

/// Indices of the set bits of a burst mask, lowest first.
#[derive(Clone, Copy)]
pub struct Bits(pub u64);

impl Iterator for Bits {
    type Item = usize;

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(i)
    }
}

/// The indices of `mask`'s set bits, as [`Bits`] gives them, for a loop
/// whose body is a store or two: a count from the lowest to the highest set
/// bit, one (predicted) branch an index. `Bits` clears a bit a step
/// (`x &= x - 1`: two dependent operations without BMI1), a chain that
/// holds such a loop to two cycles an index.
#[inline(always)]
pub fn dense(mask: u64) -> impl Iterator<Item = usize> {
    let top = 64 - mask.leading_zeros() as usize;
    (mask.trailing_zeros() as usize..top).filter(move |&i| mask >> i & 1 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_gives_what_bits_gives() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut masks = vec![0, 1, 1 << 63, u64::MAX, 0xffff_fffe, 0x8000_0001];
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            masks.push(x & (x >> 3));
        }
        for m in masks {
            assert_eq!(dense(m).collect::<Vec<_>>(), Bits(m).collect::<Vec<_>>(), "{m:#x}");
        }
    }
}
